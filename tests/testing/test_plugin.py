"""The pytest plugin's fixtures, used the way a user would."""

from agora_chat_async import AgoraChatClient, StaticToken, TextBody


async def test_a_users_test_in_three_lines(agora_emulator, agora_client):
    await agora_client.send_user_message("alice", TextBody(msg="welcome"))
    [delivery] = agora_emulator.delivered_to("alice")
    assert delivery.body == {"msg": "welcome"}


async def test_the_socket_fixture(agora_emulator_server):
    async with AgoraChatClient(
        agora_emulator_server.url, "test-org", "test-app", auth=StaticToken("test-token")
    ) as client:
        result = await client.send_group_message(["g1", "g2"], TextBody(msg="hi"))
    assert result.ok
    assert len(agora_emulator_server.emulator.deliveries) == 2

from conftest import login


def test_owner_can_sign_in_and_reach_api_tokens(client, people):
    response = login(client, people["owner"])
    assert response.status_code == 303
    page = client.get("/admin/api-tokens")
    assert page.status_code == 200
    assert "API Tokens" in page.get_data(as_text=True)

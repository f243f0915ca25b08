import base64
from datetime import UTC, datetime

import pytest

from ecr_agent.config import AwsSource, Registry
from ecr_agent.credentials import Credentials
from ecr_agent.errors import TokenError
from ecr_agent.tokens import MAX_REGISTRY_IDS, decode_token, describe_aws_error, plan_requests

NOW = datetime(2026, 1, 1, tzinfo=UTC)
LATER = datetime(2026, 1, 1, 12, tzinfo=UTC)
PASSWORD = "STAND-IN-ECR-PASSWORD"


def token(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def registry(account, region="us-east-1", **source):
    host = f"{account}.dkr.ecr.{region}.amazonaws.com"
    return Registry(host, account, AwsSource(region=region, **source))


def test_decode_token():
    credentials = decode_token(token(f"AWS:{PASSWORD}"), LATER, NOW, "host")
    assert credentials.username == "AWS"
    assert credentials.password == PASSWORD
    assert credentials.expires_at == LATER
    assert credentials.requested_at == NOW


def test_decode_token_naive_expiry_is_utc():
    credentials = decode_token(token("AWS:x"), datetime(2026, 1, 2), NOW, "host")
    assert credentials.expires_at.tzinfo is UTC


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("not base64!", "not valid base64"),
        (token("no-separator"), "user:password"),
        (token(":password-only"), "user:password"),
        (token("AWS:"), "user:password"),
        (base64.b64encode(b"\xff\xfe").decode(), "not valid base64 text"),
    ],
)
def test_decode_token_rejects_malformed(value, reason):
    with pytest.raises(TokenError, match=reason) as caught:
        decode_token(value, LATER, NOW, "123456789012.dkr.ecr.us-east-1.amazonaws.com")
    assert "123456789012.dkr.ecr.us-east-1.amazonaws.com" in str(caught.value)
    assert value not in str(caught.value)


def test_decode_token_without_expiry():
    with pytest.raises(TokenError, match="expiresAt"):
        decode_token(token("AWS:x"), None, NOW, "host")


def test_credentials_hide_password():
    credentials = Credentials("AWS", PASSWORD, NOW, LATER)
    assert PASSWORD not in repr(credentials)
    assert PASSWORD not in str(credentials)
    assert PASSWORD not in f"{credentials}"
    assert base64.b64decode(credentials.docker_auth()).decode() == f"AWS:{PASSWORD}"


def test_plan_groups_by_source():
    registries = [
        registry("111111111111"),
        registry("222222222222"),
        registry("333333333333", region="eu-west-1"),
        registry("444444444444", profile="other"),
    ]
    requests = plan_requests(registries)
    assert [len(request.registries) for request in requests] == [2, 1, 1]
    assert requests[0].label == "us-east-1 (account 111111111111, 222222222222)"


def test_plan_splits_after_ten_accounts():
    registries = [registry(f"{n:012d}") for n in range(1, 24)]
    sizes = [len(request.registries) for request in plan_requests(registries)]
    assert sizes == [MAX_REGISTRY_IDS, MAX_REGISTRY_IDS, 3]


def test_describe_client_error():
    from botocore.exceptions import ClientError

    error = ClientError(
        {
            "Error": {"Code": "AccessDeniedException", "Message": "not authorized"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        },
        "GetAuthorizationToken",
    )
    assert describe_aws_error(error) == "AccessDeniedException (HTTP 400): not authorized"


def test_describe_no_credentials():
    from botocore.exceptions import NoCredentialsError

    assert "no AWS credentials found" in describe_aws_error(NoCredentialsError())

"""moto with IAM enforcement that authorizes Secrets Manager and Parameter Store reads as AWS does.

moto 5 can check every request against the caller's IAM policies, but for Secrets Manager and SSM
it checks them against the resource "*" (only services whose response class has a
`_determine_resource`, such as SQS, IAM and STS, get a real one), its wildcard matching turns `*`
into a regular expression and leaves `?` and `.` to the regex engine (so the `-??????` that a
secret's ARN needs is an error, not a wildcard), and BatchGetSecretValue is checked only as a
whole. A least-privilege policy would be judged wrongly. This extension, loaded only by the
server process this module starts, makes moto judge the reads the operator makes the way AWS
documents them:

- Secrets Manager actions with a `SecretId` are authorized against the secret's full ARN (with its
  random 6-character suffix), whether the id is a name, a full ARN or a partial ARN. An id that
  names no secret is authorized against the ARN the id spells (the name without a suffix), so a
  policy naming `name-??????` does not cover it: the caller learns nothing of secrets it may not
  read.
- BatchGetSecretValue is authorized on "*" (it has no resource type), then
  `secretsmanager:GetSecretValue` is checked for each listed secret; a secret the caller may not
  read is left out of `SecretValues` and reported in `Errors` with `AccessDeniedException`, as AWS
  does. With `Filters`, `secretsmanager:ListSecrets` is checked too, and each secret found.
- Parameter Store actions are authorized against `arn:aws:ssm:<region>:<account>:parameter/<name
  without its leading slash>` (a `:version` or `:label` selector is not part of it): GetParameter
  against the parameter, GetParameters against each named parameter (one it may not read
  denies the whole call: its answer has no per-name error but `InvalidParameters`), and
  GetParametersByPath against the path as given, not the parameters it returns.
- Wildcards in policies are IAM's: `*` any run of characters, `?` any one character, nothing else
  special; actions match without regard to case, resources with.
- A denial is answered as these JSON services answer it: `AccessDeniedException` with AWS's
  message, naming the action and the resource.

Other actions keep moto's own checks. The server starts without enforcement, so a test can seed
AWS and create IAM users and policies; `IamMoto.enforce()` turns it on (moto's
`/moto-api/reset-auth`), after which every request needs a known access key and a policy that
allows it. Each request's operation, HTTP status, batch size and per-secret denials (never a
value) go to the log, so a test can count calls.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import requests

from tests.cluster.processes import Process, free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
BOOTSTRAP_KEY = ("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")  # before enforce()
_CALL = re.compile(r"^call (?P<operation>\w+) (?P<status>\d+) (?P<size>\d+) (?P<denied>\d+)$")

# --- the extension (runs in the server process) ----------------------------------------------------
# moto is imported inside functions only: tests/cluster/aws.py must configure moto's recorder before
# the test process first imports moto, and importing this module must not do it first.

_PARAMETER_ACTIONS = {
    "GetParameter",
    "GetParameterHistory",
    "GetParameters",
    "GetParametersByPath",
    "PutParameter",
    "DeleteParameter",
    "DeleteParameters",
    "LabelParameterVersion",
    "UnlabelParameterVersion",
}


def _enforcing() -> bool:
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    return bool(ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT)


def _iam_request(response: Any, action: str) -> Any:
    """moto's IAMRequest for this request, as moto builds it, for `action` of its service."""
    from urllib.parse import urlparse

    from moto.iam.access_control import IAMRequest

    path = response.raw_path
    query = urlparse(response.uri).query
    return IAMRequest(
        account_id=response.current_account,
        method=response.method,
        path=path + ("?" + query if query else ""),
        data=response.data,
        body=response.raw_body,
        headers=response.headers,
        action=action,
    )


def _access_denied(request: Any, resource: str) -> Exception:
    from moto.core.exceptions import JsonRESTError

    action = request._action
    return JsonRESTError(
        "AccessDeniedException",
        f"User: {request._access_key.arn} is not authorized to perform: {action} on resource: "
        f"{resource} because no identity-based policy allows the {action} action",
    )


def _permit(request: Any, resource: str) -> None:
    """Raise AccessDeniedException unless the caller's policies allow the request's action on
    `resource`."""
    from moto.core.exceptions import AccessDeniedError

    try:
        request.check_action_permitted(resource)
    except AccessDeniedError:
        raise _access_denied(request, resource) from None


def _arn(response: Any, service: str) -> str:
    return f"arn:{response.partition}:{service}:{response.region}:{response.current_account}"


def _secret_arn(response: Any, secret_id: str) -> str:
    secret = response.backend.secrets.get(secret_id)
    if secret is not None:
        return str(secret.arn)
    if secret_id.startswith("arn:"):
        return secret_id
    return f"{_arn(response, 'secretsmanager')}:secret:{secret_id}"


def _parameter_arn(response: Any, name: str) -> str:
    if name.startswith("arn:"):
        return ":".join(name.split(":")[:6])  # without a :version or :label selector
    name = name.split(":")[0]
    return f"{_arn(response, 'ssm')}:parameter/{name.lstrip('/')}"


def _secrets_resources(response: Any) -> list[str]:
    secret_id = response._get_param("SecretId")
    return [_secret_arn(response, secret_id)] if secret_id else ["*"]


def _parameter_resources(response: Any) -> list[str]:
    action = response._get_action()
    if action not in _PARAMETER_ACTIONS:
        return ["*"]
    if action == "GetParametersByPath":
        names = [response._get_param("Path")]
    elif action in ("GetParameters", "DeleteParameters"):
        names = list(response._get_param("Names") or [])
    else:
        names = [response._get_param("Name")]
    return [_parameter_arn(response, n) for n in names if n] or ["*"]


def _authorizer(resources: Callable[[Any], list[str]]) -> Callable[..., None]:
    def authorize(self: Any, resource: str = "*") -> None:
        from moto.core.responses import BaseResponse

        if not _enforcing():
            BaseResponse._authenticate_and_authorize_normal_action(self, resource)  # counts the request
            return
        request = _iam_request(self, self._get_action())  # an unknown key: InvalidClientTokenId
        request.check_signature()
        for arn in resources(self):
            _permit(request, arn)

    return authorize


def _batch_get_secret_value(self: Any) -> str:
    """AWS's BatchGetSecretValue: GetSecretValue is checked per secret; denials go to `Errors`."""
    if not _enforcing():
        return str(_ORIGINAL_BATCH(self))
    ids = list(self._get_param("SecretIdList", if_none=[]))
    filters = self._get_param("Filters", if_none=[])
    per_secret = _iam_request(self, "GetSecretValue")
    errors: list[dict[str, str]] = []

    def denied(secret_id: str, arn: str) -> bool:
        from moto.core.exceptions import JsonRESTError

        try:
            _permit(per_secret, arn)
        except JsonRESTError as e:
            errors.append({"SecretId": secret_id, "ErrorCode": e.error_type, "Message": e.message})
            return True
        return False

    if filters:
        _permit(_iam_request(self, "ListSecrets"), "*")
    allowed = [i for i in ids if not denied(i, _secret_arn(self, i))]
    values, missing, next_token = (
        self.backend.batch_get_secret_value(
            secret_id_list=allowed,
            filters=filters,
            max_results=self._get_int_param("MaxResults"),
            next_token=self._get_param("NextToken"),
        )
        if allowed or filters
        else ([], [], None)
    )
    if filters:
        values = [v for v in values if not denied(v["Name"], v["ARN"])]
    return json.dumps({"SecretValues": values, "Errors": [*missing, *errors], "NextToken": next_token})


def _glob(pattern: str) -> str:
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)


def _element_matches(self: Any, element: str, value: str) -> bool:
    """IAM's wildcards (`*`, `?`); actions match whatever their case, resources exactly."""
    patterns = self._statement[element]
    flags = re.IGNORECASE if element in ("Action", "NotAction") else 0
    return any(
        re.fullmatch(_glob(p), value, flags) for p in ([patterns] if isinstance(patterns, str) else patterns)
    )


_ORIGINAL_BATCH: Callable[[Any], Any]


def install() -> None:
    """Patch moto's Secrets Manager and SSM responses and its policy matching (this process only)."""
    global _ORIGINAL_BATCH
    from moto.iam.access_control import IAMPolicyStatement
    from moto.secretsmanager.responses import SecretsManagerResponse
    from moto.ssm.responses import SimpleSystemManagerResponse

    SecretsManagerResponse._authenticate_and_authorize_normal_action = _authorizer(_secrets_resources)
    SimpleSystemManagerResponse._authenticate_and_authorize_normal_action = _authorizer(_parameter_resources)
    _ORIGINAL_BATCH = SecretsManagerResponse.batch_get_secret_value
    SecretsManagerResponse.batch_get_secret_value = _batch_get_secret_value
    IAMPolicyStatement._check_element_matches = _element_matches


def _logged(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """Log each request's operation, HTTP status, batch size and, for BatchGetSecretValue, how many
    of its secrets were denied: enough to count calls, and never a value."""
    import io

    def call(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        if not target or str(environ.get("PATH_INFO", "")).startswith("/moto-api"):
            return app(environ, start_response)
        operation = target.rsplit(".", 1)[-1]
        size = 0
        try:
            request = json.loads(body or b"{}")
            size = len(request.get("SecretIdList") or request.get("Names") or [])
        except ValueError:
            pass
        status = ["0"]

        def start(line: str, headers: Any, *rest: Any) -> Any:
            status[0] = line.split()[0]
            return start_response(line, headers, *rest)

        answer = b"".join(app(environ, start))
        denied = 0
        if operation == "BatchGetSecretValue" and status[0] == "200":
            errors = json.loads(answer).get("Errors") or []
            denied = sum(e.get("ErrorCode") == "AccessDeniedException" for e in errors)
        print(f"call {operation} {status[0]} {size} {denied}", flush=True)
        return [answer]

    return call


def main(argv: list[str]) -> None:
    """`python -m tests.cluster.aws_iam HOST PORT`: the extended moto server, until SIGTERM."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            """Calls are logged by `_logged`, without moto's request lines."""

    install()
    host, port = argv[0], int(argv[1])
    server = make_server(
        host, port, _logged(DomainDispatcherApplication(create_backend_app)), True, request_handler=Quiet
    )
    print(f"serving on http://{host}:{port}", flush=True)
    server.serve_forever()


# --- the test side ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    access_key_id: str
    secret_access_key: str


@dataclass(frozen=True)
class Call:
    operation: str
    status: int
    size: int  # ids or names in a batch call
    denied: int  # secrets of a BatchGetSecretValue answered AccessDeniedException in its Errors


class IamMoto:
    """The extended moto server as a child process on a free loopback port."""

    def __init__(self, log: Path, host: str = "127.0.0.1") -> None:
        self.port = free_port(host)
        self.endpoint = f"http://{host}:{self.port}"
        self.log = log
        self.process = Process(
            "moto-iam",
            [sys.executable, "-m", "tests.cluster.aws_iam", host, str(self.port)],
            log,
            env={"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)},
            cwd=REPO,
        )

    def start(self) -> IamMoto:
        self.process.start()
        wait_for(
            "moto with IAM enforcement",
            lambda: requests.get(f"{self.endpoint}/moto-api/data.json", timeout=2).ok,
            60,
            0.2,
            self.process,
        )
        return self

    def stop(self) -> None:
        self.process.stop()

    def enforce(self) -> None:
        """From now on every request is checked against its caller's IAM policies."""
        requests.post(f"{self.endpoint}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()

    def client(self, service: str, keys: Keys | None = None) -> Any:
        key_id, secret = (keys.access_key_id, keys.secret_access_key) if keys else BOOTSTRAP_KEY
        return boto3.client(
            service,  # type: ignore[call-overload]
            region_name=REGION,
            endpoint_url=self.endpoint,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
        )

    def user(self, name: str, policy: dict[str, Any] | None) -> Keys:
        """An IAM user with `policy` attached (a managed policy of its own) and an access key."""
        iam = self.client("iam")
        iam.create_user(UserName=name)
        if policy is not None:
            created = iam.create_policy(PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy))
            iam.attach_user_policy(UserName=name, PolicyArn=created["Policy"]["Arn"])
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return Keys(key["AccessKeyId"], key["SecretAccessKey"])

    def env_for(self, keys: Keys) -> dict[str, str]:
        """Environment that points botocore at this server with `keys`."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": keys.access_key_id,
            "AWS_SECRET_ACCESS_KEY": keys.secret_access_key,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def calls(self) -> list[Call]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            match = _CALL.match(line)
            if match:
                out.append(
                    Call(match["operation"], int(match["status"]), int(match["size"]), int(match["denied"]))
                )
        return out


@dataclass(frozen=True)
class Identity:
    """`keys` on `aws`, in the shape tests.cluster.operator.operator_env takes (an `env()`)."""

    aws: IamMoto
    keys: Keys

    def env(self) -> dict[str, str]:
        return self.aws.env_for(self.keys)


if __name__ == "__main__":
    main(sys.argv[1:])

"""A teammate whose credentials (or the bucket's policy) only allow reads, left in the default
read-write mode: the run goes on as in mode read-only, warned once, instead of failing every
node it computes at the upload (the CLI in fresh processes against a real moto server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_store import MOTO, MotoServer

FLOW = """
from etherealfabric import Workflow, node


@node
def big(n):
    return "y" * 100_000 + str(n)  # a stored object


@node
def size(b):
    return len(b)


with Workflow("readonly", params={"n": 3}) as workflow:
    size(big(workflow.params.n))
"""


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoServer]:
    yield MOTO.ensure()


def _read_only_bucket(s3: MotoServer) -> str:
    boto3 = pytest.importorskip("boto3")
    client = boto3.client(
        "s3",
        endpoint_url=s3.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    bucket = f"read-only-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    deny = {"Effect": "Deny", "Principal": "*", "Action": ["s3:PutObject", "s3:DeleteObject"]}
    statement = {**deny, "Resource": f"arn:aws:s3:::{bucket}/*"}
    policy = {"Version": "2012-10-17", "Statement": [statement]}
    client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    return bucket


def _ef(root: Path, url: str, s3: MotoServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETHEREALFABRIC_", "AWS_"))}
    env.update(
        ETHEREALFABRIC_STORE=url,
        ETHEREALFABRIC_S3_ENDPOINT_URL=s3.endpoint,
        ETHEREALFABRIC_SIGNING_KEY="team-secret-0123456789abcdef",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_CONFIG_FILE=str(root / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(root / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    return subprocess.run(
        [sys.executable, "-m", "etherealfabric", *args, "--home", str(root / "home")],
        cwd=root, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def test_a_run_against_a_bucket_that_refuses_writes_goes_on_as_read_only(
    s3: MotoServer, tmp_path: Path
) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    url = f"s3://{_read_only_bucket(s3)}/team"
    first = _ef(tmp_path, url, s3, "run", "flow.py", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["executed"] == 2
    warnings = [line for line in first.stderr.splitlines() if "refuses writes" in line]
    assert len(warnings) == 1, first.stderr  # once, not per node
    assert url in warnings[0] and "ETHEREALFABRIC_STORE_MODE=read-only" in warnings[0]
    again = _ef(tmp_path, url, s3, "run", "flow.py", "--json")  # the home kept the results
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["executed"] == 0
    run_id = json.loads(again.stdout)["run_id"]
    shown = _ef(tmp_path, url, s3, "cat", run_id, "size")
    assert shown.returncode == 0 and shown.stdout.strip() == "100001", shown.stderr
    push = _ef(tmp_path, url, s3, "cache", "push")  # an explicit push still says it failed
    assert push.returncode != 0 and "ETHEREALFABRIC_STORE_MODE=read-only" in push.stderr

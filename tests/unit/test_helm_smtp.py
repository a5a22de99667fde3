"""The chart's alert e-mail (alerts.smtp) and dashboard link (alerts.dashboardUrl), checked on what `helm template`
renders: the analyzers get LLMSIGHT_SMTP_* variables that llmsight itself accepts, the password only from a
Secret, the NetworkPolicy opens the SMTP port, and values that cannot work are refused at install time."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from llmsight.alerts.notify import EMAIL, Notifier
from tests.unit.test_helm import container, effective_env, find, render, render_error

SMTP = {"host": "smtp.example.com", "user": "llmsight", "password": {"value": "Sm7p-chart-pw"},
        "from": "llmsight@example.com", "to": ["oncall@example.com", "sre@example.com"],
        "ruleTo": [{"rule": "input-*", "to": ["ml@example.com"]},
                   {"rule": "output-toxicity", "to": ["trust@example.com", "oncall@example.com"]}]}


def _analyzers_env(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return effective_env(docs, container(docs, "Deployment", "rel-llmsight-analyzers"))


def test_by_default_no_e_mail_and_no_link() -> None:
    docs = render()
    env = _analyzers_env(docs)
    assert not [name for name in env if name.startswith("LLMSIGHT_SMTP_") or name == "LLMSIGHT_DASHBOARD_URL"]


def test_the_rendered_settings_are_what_llmsight_accepts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render({"alerts": {"smtp": SMTP, "dashboardUrl": "https://llmsight.example.com"}}, tmp_path=tmp_path)
    env = _analyzers_env(docs)
    own = {k: base64.b64decode(v).decode() for k, v in find(docs, "Secret", "rel-llmsight-secrets")["data"].items()}
    assert env["LLMSIGHT_SMTP_PASSWORD"] == ("secret", "rel-llmsight-secrets", "LLMSIGHT_SMTP_PASSWORD")
    assert own["LLMSIGHT_SMTP_PASSWORD"] == "Sm7p-chart-pw"
    assert "Sm7p-chart-pw" not in str(find(docs, "Deployment", "rel-llmsight-analyzers"))
    assert env["LLMSIGHT_SMTP_RULE_TO"] == "input-*=ml@example.com;output-toxicity=trust@example.com,oncall@example.com"
    # Only the analyzers (where alerts run) get them.
    assert "LLMSIGHT_SMTP_HOST" not in effective_env(docs, container(docs, "Deployment", "rel-llmsight-collector"))
    for name, value in env.items():
        if name.startswith("LLMSIGHT_SMTP_") or name == "LLMSIGHT_DASHBOARD_URL":
            monkeypatch.setenv(name, own[value[2]] if isinstance(value, tuple) else value)
    notifier = Notifier.from_settings()
    [target] = notifier.targets
    mailer = target.mailer
    assert target.kind == EMAIL and mailer is not None
    assert (mailer.host, mailer.port, mailer.starttls, mailer.tls) == ("smtp.example.com", 587, True, False)
    assert (mailer.user, mailer.password, mailer.sender) == ("llmsight", "Sm7p-chart-pw", "llmsight@example.com")
    assert mailer.recipients("input-drift") == ("ml@example.com",)
    assert mailer.recipients("output-toxicity") == ("trust@example.com", "oncall@example.com")
    assert mailer.recipients("latency-p95") == ("oncall@example.com", "sre@example.com")
    assert notifier.dashboard_url == "https://llmsight.example.com"


def test_implicit_tls_a_secret_key_ref_and_the_network_policy(tmp_path: Path) -> None:
    smtp = {**SMTP, "security": "tls", "password": {"secretKeyRef": {"name": "mail", "key": "pw"}}}
    docs = render({"alerts": {"smtp": smtp}, "networkPolicy": {"enabled": True}}, tmp_path=tmp_path)
    env = _analyzers_env(docs)
    assert (env["LLMSIGHT_SMTP_PORT"], env["LLMSIGHT_SMTP_TLS"], env["LLMSIGHT_SMTP_STARTTLS"]) == ("465", "true", "false")
    assert env["LLMSIGHT_SMTP_PASSWORD"] == ("secret", "mail", "pw")
    secret = [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "rel-llmsight-secrets"]
    assert not secret or "LLMSIGHT_SMTP_PASSWORD" not in secret[0]["data"]
    egress = find(docs, "NetworkPolicy", "rel-llmsight-analyzers")["spec"]["egress"]
    assert 465 in {p["port"] for rule in egress for p in rule.get("ports", [])}
    collector = find(docs, "NetworkPolicy", "rel-llmsight-collector")["spec"]["egress"]
    assert 465 not in {p["port"] for rule in collector for p in rule.get("ports", [])}


def test_a_private_ca_is_mounted_where_llmsight_reads_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render({"alerts": {"smtp": {**SMTP, "caSecret": {"name": "mail-ca", "key": "root.pem"}}}}, tmp_path=tmp_path)
    deployment = find(docs, "Deployment", "rel-llmsight-analyzers")
    env = _analyzers_env(docs)
    mount = next(m for m in container(docs, "Deployment", "rel-llmsight-analyzers")["volumeMounts"]
                 if m["name"] == "smtp-ca")
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "smtp-ca")
    assert volume["secret"] == {"secretName": "mail-ca", "items": [{"key": "root.pem", "path": "root.pem"}]}
    assert mount["readOnly"] is True
    assert f"{mount['mountPath']}/root.pem" == env["LLMSIGHT_SMTP_CAFILE"]
    # llmsight takes the mounted file as the CA (here a file at the same name under tmp_path stands in for the mount).
    ca = tmp_path / "root.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    for name, value in env.items():
        if name.startswith("LLMSIGHT_SMTP_"):
            monkeypatch.setenv(name, "pw" if isinstance(value, tuple) else value)
    monkeypatch.setenv("LLMSIGHT_SMTP_CAFILE", str(ca))
    [target] = Notifier.from_settings().targets
    assert target.mailer is not None and target.mailer.cafile == str(ca)
    # Without the Secret: no variable, no volume (the system trust store).
    plain = render({"alerts": {"smtp": SMTP}}, tmp_path=tmp_path)
    assert "LLMSIGHT_SMTP_CAFILE" not in _analyzers_env(plain)
    assert "smtp-ca" not in str(find(plain, "Deployment", "rel-llmsight-analyzers"))


@pytest.mark.parametrize(("smtp", "message"), [
    ({**SMTP, "from": ""}, "alerts.smtp.from is empty"),
    ({**SMTP, "to": [], "ruleTo": []}, "no recipient is"),
    ({**SMTP, "password": {"value": ""}}, "alerts.smtp.user and alerts.smtp.password go together"),
    ({**SMTP, "security": "none"}, "the password would cross the network in clear"),
    ({**SMTP, "security": "ssl"}, 'alerts.smtp.security must be one of the following: "starttls", "tls", "none"'),
    ({**SMTP, "port": "submission"}, "alerts.smtp.port: Invalid type. Expected: integer"),
    ({**SMTP, "password": {"value": "x", "secretKeyRef": {"name": "mail", "key": "pw"}}},
     "alerts.smtp.password is given both as value and as secretKeyRef"),
    ({"to": ["oncall@example.com"]}, "alerts.smtp.host is empty"),
    ({**SMTP, "ruleTo": [{"rule": "input-*"}]}, "alerts.smtp.ruleTo.0: to is required"),
    ({**SMTP, "user": "", "password": {"value": ""}, "security": "none", "caSecret": {"name": "mail-ca"}},
     "alerts.smtp.caSecret is set but alerts.smtp.security is none"),
    ({"caSecret": {"name": "mail-ca"}}, "alerts.smtp.host is empty"),
])
def test_values_that_cannot_work_are_refused(smtp: dict[str, Any], message: str, tmp_path: Path) -> None:
    assert message in render_error({"alerts": {"smtp": smtp}}, tmp_path)

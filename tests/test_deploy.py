"""deploy/ checked with real tools: promtool, the Kubernetes API schemas, and a live /metrics."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from reward_service import config as config_module

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def promtool():
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool missing in CI: .ci/run installs Debian's prometheus package")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return path


def run(*args, cwd=DEPLOY):
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_prometheus_config_and_rules_pass_promtool():
    tool = promtool()
    run(tool, "check", "config", "prometheus/prometheus.yml")
    assert "7 rules found" in run(tool, "check", "rules", "prometheus/alerts.yml")
    run(tool, "test", "rules", "alerts_test.yml", cwd=DEPLOY / "prometheus")


def test_kubernetes_manifests_match_the_api_schemas():
    import kubernetes_validate

    manifests = sorted((DEPLOY / "k8s").glob("*.yaml"))
    kinds = set()
    for path in manifests:
        for document in yaml.safe_load_all(path.read_text()):
            kubernetes_validate.validate(document, "1.30", strict=True)
            kinds.add(document["kind"])
    assert {"Deployment", "Service", "ConfigMap", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds
    gpu = yaml.safe_load((DEPLOY / "k8s" / "deployment-gpu.yaml").read_text())
    assert gpu["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    cpu = yaml.safe_load((DEPLOY / "k8s" / "deployment.yaml").read_text())
    container = cpu["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_the_schema_check_really_rejects_a_bad_manifest():
    import kubernetes_validate

    document = yaml.safe_load((DEPLOY / "k8s" / "deployment.yaml").read_text())
    document["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(document, "1.30", strict=True)


def test_the_configmap_holds_a_valid_service_config():
    configmap = yaml.safe_load((DEPLOY / "k8s" / "configmap.yaml").read_text())
    settings = config_module.parse(configmap["data"]["config.yaml"], "configmap", environ={})
    assert settings.server.host == "0.0.0.0" and settings.default_backend in settings.backends


METRIC = r"\b(?:reward|human)_[a-z_]+?(?=_bucket\b|\b)"


def dashboard_metric_names() -> set[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "reward-service.json").read_text())
    assert dashboard["panels"], "dashboard has no panels"
    names = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            names |= set(re.findall(METRIC, target["expr"]))
    return names


def test_every_dashboard_query_names_a_metric_the_service_exports(tiny_model, tmp_path):
    from fastapi.testclient import TestClient

    from reward_service import config as config_module
    from reward_service.app import create_app

    settings = config_module.parse(f"""
default_backend: sentiment
backends:
  sentiment: {{type: sentiment, model: {tiny_model}, runtime: torch, max_length: 64}}
  human: {{type: human, store: "sqlite:///{tmp_path / 'q.db'}", raters: {{alice: token-alice-0123456}}}}
  code: {{type: code, timeout_s: 5}}
""", "test config", environ={})
    with TestClient(create_app(settings, load_in_background=False)) as client:
        client.post("/score", json={"items": [{"prompt": "", "response": "good"}]})
        client.post("/score", json={"items": [{"prompt": "", "response": "good"}], "backend": "human", "wait": False})
        task = client.get("/v1/tasks/next", headers={"Authorization": "Bearer token-alice-0123456"}).json()["task"]
        client.post(f"/v1/tasks/{task['id']}/rating", headers={"Authorization": "Bearer token-alice-0123456"},
                    json={"score": 3})
        client.post("/score", json={"items": [{"prompt": "", "response": "print(1)", "reference": "assert True"}],
                                    "backend": "code"})
        exported = client.get("/metrics").text
    series = set(re.findall(r"^((?:reward|human)_[a-z_]+?)(?:_bucket|_count|_sum|_total|_created)?[{ ]", exported,
                            flags=re.M))
    series |= set(re.findall(r"^((?:reward|human)_[a-z_]+)[{ ]", exported, flags=re.M))
    missing = sorted(name for name in dashboard_metric_names() if name not in series)
    assert not missing, f"dashboard queries metrics the service does not export: {missing}"
    alerts = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    missing = sorted(n for n in set(re.findall(METRIC, alerts)) if n not in series)
    assert not missing, f"alert rules use metrics the service does not export: {missing}"


def test_grafana_provisioning_points_at_the_dashboard_folder():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/reward-service.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert any(m.endswith(":" + path + ":ro") and (DEPLOY / m.split(":")[0]).is_dir() for m in mounts)
    assert compose["services"]["reward-service"]["build"]["target"] == "cpu"


def test_the_image_is_built_with_the_script_ci_runs():
    """Every environment comes from setup.sh; the images carry the serving one (no training
    extras), a failed model build fails the image, and the cpu image holds prepared graphs."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.count("bash scripts/setup.sh") == 3  # the cpu and gpu serving environments, the models'
    assert "pip install" not in dockerfile
    for target in ("AS cpu", "AS gpu", "USER reward", "HEALTHCHECK"):
        assert target in dockerfile
    images = dockerfile[dockerfile.index("AS runtime-base"):]
    assert "COPY --from=serve-env-cpu /opt/venv /opt/venv" in images and "venv-train" not in images
    assert 'models build "$m" || exit 1; done' in dockerfile
    assert "reward-service models prepare --no-build" in dockerfile
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
    assert "scripts/setup.sh" in (ROOT / "scripts" / "test.sh").read_text()

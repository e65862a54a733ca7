"""The chart with compiled values, through a real Helm binary and Kubernetes 1.33 schemas (offline)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from pipeteer.compile import build_topology, compile_to
from tests.unit.compile.sample_app import APP_REF, app

CHART = Path(__file__).resolve().parents[3] / "helm" / "pipeteer"
K8S_VERSION = "1.33.0"
# Custom resources (Prometheus Operator, KEDA): not in the Kubernetes schemas; checked field by field below.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("keda.sh/v1alpha1", "ScaledObject")}
TOPO = build_topology(app, app_ref=APP_REF)
NO_AUTH = ["--set", "kafka.bootstrap=kafka.example:9092", "--set", "image.repository=registry.example/pipeteer"]
BASE = [*NO_AUTH, "--set", "auth.existingSecret=pipeteer-reviewers"]
ALL_FEATURES = [
    *BASE,
    "--set", "kafka.existingSecret=pipeteer-kafka",
    "--set", "kafka.properties.security\\.protocol=SASL_SSL",
    "--set", "kafka.properties.sasl\\.mechanism=SCRAM-SHA-512",
    "--set", "ingress.enabled=true",
    "--set", "ingress.host=pipeteer.example",
    "--set", "ingress.className=nginx",
    "--set", "serviceMonitor.enabled=true",
    "--set", "autoscaling.enabled=true",
    "--set", "networkPolicy.egress.enabled=true",
    "--set", "networkPolicy.ingressNamespaces={ingress-nginx,monitoring}",
]  # fmt: skip


@pytest.fixture(scope="module")
def values(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compiled")
    compile_to(app, out, app_ref=APP_REF)
    return out / "helm" / "values.yaml"


def helm_run(helm: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def render(helm: Path, values: Path, extra: Sequence[str], release: str = "demo") -> list[dict[str, Any]]:
    out = helm_run(
        helm, "template", release, str(CHART), "--namespace", "work", "-f", str(values), *extra
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The documents of a kind; for Services, the stages' own (not the headless ones human stages' instances find each other by)."""
    return [d for d in docs if d["kind"] == kind and not (kind == "Service" and d["spec"].get("clusterIP") == "None")]


def validate_all(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(
                f"{doc['kind']}/{doc['metadata']['name']} is invalid for Kubernetes {K8S_VERSION}: {e.message} at {list(e.path)}"
            )


def test_lint_defaults_and_compiled_values(helm: Path, values: Path) -> None:
    helm_run(helm, "lint", "--strict", str(CHART))
    out = helm_run(helm, "lint", "--strict", str(CHART), "-f", str(values), *ALL_FEATURES).stdout
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(BASE, id="defaults"),
        pytest.param(ALL_FEATURES, id="all-features"),
        pytest.param([*ALL_FEATURES, "--set", "autoscaling.kind=keda"], id="keda"),
    ],
)
def test_rendered_manifests_are_valid_kubernetes_133(helm: Path, values: Path, extra: list[str]) -> None:
    docs = render(helm, values, extra)
    validate_all(docs)
    deployments = by_kind(docs, "Deployment")
    assert sorted(d["metadata"]["labels"]["pipeteer.io/stage"] for d in deployments) == sorted(
        TOPO.stage_names()
    )


def test_deployments_are_restricted_and_run_their_stage(helm: Path, values: Path) -> None:
    docs = render(helm, values, ALL_FEATURES)
    for d in by_kind(docs, "Deployment"):
        stage = TOPO.stage(d["metadata"]["labels"]["pipeteer.io/stage"])
        pod = d["spec"]["template"]["spec"]
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] >= 10000
        assert psc["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        (c,) = pod["containers"]
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
        assert sc["runAsUser"] >= 10000 and sc["runAsNonRoot"] is True
        tmp = {m["name"] for m in c["volumeMounts"] if m["mountPath"] == "/tmp"}
        assert tmp and any(v["name"] in tmp and "emptyDir" in v for v in pod["volumes"])
        # the stage command, listening on all interfaces of the pod
        cmd = c["command"]
        assert cmd[:3] == ["pipeteer", "run", APP_REF]
        assert cmd[cmd.index("--stage") + 1] == stage.name
        assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
        assert c["ports"][0]["containerPort"] == stage.port
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["image"] == "registry.example/pipeteer:0.3.0"
        assert c["resources"]["limits"]["memory"]
        # credentials only by reference to an existing Secret
        assert {"secretRef": {"name": "pipeteer-kafka"}} in c["envFrom"]
        assert all("value" not in e or "PASSWORD" not in e["name"].upper() for e in c.get("env", []))
        # autoscaling owns the replica count
        assert "replicas" not in d["spec"]
    (cm,) = by_kind(docs, "ConfigMap")
    assert cm["data"]["PIPETEER_BACKEND"] == "kafka://kafka.example:9092"
    assert cm["data"]["PIPETEER_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert by_kind(docs, "Secret") == []


def test_services_ingress_monitoring_and_autoscaling(helm: Path, values: Path) -> None:
    web = [s for s in TOPO.stages if s.web]
    plain = by_kind(render(helm, values, BASE), "Service")
    assert len(plain) == len(web)  # a Service per web stage only
    docs = render(helm, values, ALL_FEATURES)
    assert len(by_kind(docs, "Service")) == len(TOPO.stages)  # + metrics Services for the ServiceMonitor
    (ing,) = by_kind(docs, "Ingress")
    paths = {p["path"] for p in ing["spec"]["rules"][0]["http"]["paths"]}
    assert paths == {f"/{s.name}/" for s in web}
    (sm,) = by_kind(docs, "ServiceMonitor")
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    assert len(hpas) == len(TOPO.stages)
    assert {h["spec"]["maxReplicas"] for h in hpas} == {TOPO.partitions}  # capped at the partition count
    assert len(by_kind(docs, "PodDisruptionBudget")) == len(TOPO.stages)
    policies = by_kind(docs, "NetworkPolicy")
    assert len(policies) == len(TOPO.stages)
    assert all(p["spec"]["policyTypes"] == ["Ingress", "Egress"] for p in policies)
    keda = by_kind(render(helm, values, [*ALL_FEATURES, "--set", "autoscaling.kind=keda"]), "ScaledObject")
    assert len(keda) == len(TOPO.stages)
    for so in keda:
        trigger = so["spec"]["triggers"][0]
        stage = next(s for s in TOPO.stages if so["metadata"]["name"].endswith(s.k8s_name))
        assert trigger["type"] == "kafka"
        assert (trigger["metadata"]["topic"], trigger["metadata"]["consumerGroup"]) == (
            stage.input_topic,
            stage.consumer_group,
        )
        assert so["spec"]["maxReplicaCount"] == TOPO.partitions


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "image.tag=latest"], "/image/tag"),
        (["--set", "kafka.password=hunter2"], "additional properties 'password' not allowed"),
        (["--set", "kafka.properties.sasl\\.password=hunter2"], "invalid propertyName 'sasl.password'"),
        (["--set", "securityContext.runAsUser=1000"], "runAsUser"),
        (["--set", "securityContext.readOnlyRootFilesystem=false"], "readOnlyRootFilesystem"),
        (["--set", "stages.auto-correct.replicas=7"], "exceeds its 6 partitions"),
        (["--set", "alertRules[0].for=soon"], "/alertRules/0/for"),
        # fields of Windows pods are not for this Linux image (hostProcess would make it a host process)
        (["--set", "securityContext.windowsOptions.hostProcess=true"], "additional properties 'windowsOptions' not allowed"),
        (["--set", "terminationGracePeriodSeconds=12"], "must exceed webPreStopSeconds (3) by at least 10"),
        (["--set", "webPreStopSeconds=25"], "terminationGracePeriodSeconds (30) must exceed webPreStopSeconds (25)"),
        (["--set", "webPreStopSeconds=120"], "/webPreStopSeconds"),
    ],
)
def test_unsafe_values_are_refused(helm: Path, values: Path, extra: list[str], message: str) -> None:
    proc = helm_run(helm, "template", "demo", str(CHART), "-f", str(values), *BASE, *extra, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr


def test_missing_bootstrap_is_explained(helm: Path, values: Path) -> None:
    proc = helm_run(helm, "template", "demo", str(CHART), "-f", str(values), check=False)
    assert proc.returncode != 0 and "kafka.bootstrap" in proc.stderr


def test_the_schema_check_catches_a_broken_manifest(helm: Path, values: Path) -> None:
    (deployment, *_) = by_kind(render(helm, values, BASE), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUsr"] = 10001
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"].pop("runAsUsr")
    deployment["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_reviewer_tokens_come_from_an_existing_secret(helm: Path, values: Path) -> None:
    docs = render(helm, values, BASE)
    web = [d for d in by_kind(docs, "Deployment") if any(
        e.get("name") == "PIPETEER_AUTH_TOKEN_FILE" for e in d["spec"]["template"]["spec"]["containers"][0]["env"])]
    assert web, "no stage got the tokens file"
    pod = web[0]["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "auth"]
    assert volume["secret"] == {"secretName": "pipeteer-reviewers", "items": [{"key": "tokens", "path": "tokens"}]}
    [mount] = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "auth"]
    assert mount == {"name": "auth", "mountPath": "/etc/pipeteer/auth", "readOnly": True}
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["PIPETEER_AUTH_TOKEN_FILE"] == "/etc/pipeteer/auth/tokens"
    validate_all(docs)


def test_web_stages_without_authentication_do_not_render(helm: Path, values: Path) -> None:
    proc = helm_run(helm, "template", "demo", str(CHART), "-f", str(values), *NO_AUTH, check=False)
    assert proc.returncode != 0 and "serves people's pages: set auth.existingSecret" in proc.stderr
    proxy = render(helm, values, [*NO_AUTH, "--set", "auth.proxyHeader=X-Forwarded-User",
                                  "--set", "auth.trustedProxies={10.0.0.0/8}"])
    [config] = by_kind(proxy, "ConfigMap")
    assert config["data"]["PIPETEER_AUTH_PROXY_HEADER"] == "X-Forwarded-User"
    assert config["data"]["PIPETEER_AUTH_TRUSTED_PROXIES"] == "10.0.0.0/8"
    off = render(helm, values, [*NO_AUTH, "--set", "auth.disabled=true"])
    assert by_kind(off, "ConfigMap")[0]["data"]["PIPETEER_NO_AUTH"] == "1"


DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
STAGE_KINDS = ("Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "HorizontalPodAutoscaler")


@pytest.mark.parametrize(
    "release",
    [
        pytest.param("demo", id="short"),
        pytest.param("perspective-correction-production-europe-west-blue-1", id="long-53"),
        pytest.param("1pc", id="digit-first"),
        pytest.param("0.0-0" + "9" * 48, id="maximal-digits-and-dots"),
        pytest.param("a" * 53, id="maximal-letters"),
    ],
)
def test_stage_resource_names_are_unique_and_valid_for_any_release_name(
    helm: Path, values: Path, release: str
) -> None:
    assert len(release) <= 53  # what Helm accepts
    docs = render(helm, values, ALL_FEATURES, release=release)
    validate_all(docs)
    for kind in STAGE_KINDS:
        found = [d["metadata"]["name"] for d in by_kind(docs, kind)]
        assert len(found) == len(TOPO.stages), kind
        assert len(set(found)) == len(found), f"{kind} names collide for release {release!r}: {found}"
    for doc in docs:
        name = doc["metadata"]["name"]
        # Service names must be DNS-1035 labels; the same rule for every other name keeps them uniform
        assert len(name) <= 63 and DNS_1035.match(name), f"{doc['kind']}/{name} (release {release!r})"
    # each stage's Deployment still says which stage it runs
    for d in by_kind(docs, "Deployment"):
        stage = TOPO.stage(d["metadata"]["labels"]["pipeteer.io/stage"])
        assert stage.k8s_name in d["metadata"]["name"]


def test_release_names_that_differ_only_in_their_last_characters_get_distinct_names(
    helm: Path, values: Path
) -> None:
    first, second = "x" * 52 + "1", "x" * 52 + "2"
    names = [
        {d["metadata"]["name"] for d in by_kind(render(helm, values, BASE, release=r), "Deployment")}
        for r in (first, second)
    ]
    assert len(names[0]) == len(TOPO.stages) and names[0].isdisjoint(names[1])
    # names stay the same from one render to the next (upgrades keep their resources)
    again = {d["metadata"]["name"] for d in by_kind(render(helm, values, BASE, release=first), "Deployment")}
    assert again == names[0]


def test_human_stages_find_their_other_instances(helm: Path, values: Path) -> None:
    docs = render(helm, values, BASE)
    headless = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service" and d["spec"].get("clusterIP") == "None"}
    web = [d for d in by_kind(docs, "Deployment") if any(
        e["name"] == "PIPETEER_CONSOLE_PEERS" for e in d["spec"]["template"]["spec"]["containers"][0]["env"])]
    assert web and len(headless) == len(web)
    for deployment in web:
        env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        _, name, port = env["PIPETEER_CONSOLE_PEERS"].split(":")
        service = headless[name]
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
        assert service["spec"]["ports"][0]["port"] == int(port)
    validate_all(docs)


def test_a_stage_creates_a_missing_topic_as_compiled(helm: Path, values: Path) -> None:
    """`topics apply` not run: the Kafka settings the pods read from the chart's ConfigMap create
    every topic with the compiled partitions, replication and min.insync.replicas."""
    from pipeteer.queues.kafka.config import KafkaSettings

    (cm,) = by_kind(render(helm, values, BASE), "ConfigMap")
    env = {k: v for k, v in cm["data"].items() if k.startswith("PIPETEER_")}
    topics = KafkaSettings.from_url(env["PIPETEER_BACKEND"], env=env).topics
    for t in TOPO.topics:
        created = topics.settings(t.kind, t.name)
        compiled = {"partitions": t.partitions, "replication.factor": t.replication_factor}
        assert {k: created[k] for k in compiled} == compiled, t.name
        assert str(created["min.insync.replicas"]) == str(t.config["min.insync.replicas"]), t.name
    # a single-broker cluster compiled with the local profile: the pods create topics for one broker
    local = render(helm, values, [*BASE, "--set", "topicProfile=local", "--set", "replicationFactor=1"])
    (cm,) = by_kind(local, "ConfigMap")
    env = {k: v for k, v in cm["data"].items() if k.startswith("PIPETEER_")}
    created = KafkaSettings.from_url(env["PIPETEER_BACKEND"], env=env).topics.settings("data", "in")
    assert (created["replication.factor"], created["min.insync.replicas"]) == (1, 1)


def test_rollouts_hand_a_stage_over_one_instance_at_a_time(helm: Path, values: Path) -> None:
    """Kafka stage instances are dynamic consumer-group members: one that gets SIGTERM commits, leaves
    its group at once and exits, so its replacement need not wait out a session timeout, and nothing
    in the chart asks for static membership. One instance is replaced at a time (never more
    consumers than partitions); web stages pause before SIGTERM so their Service stops sending
    people's requests first, well inside the grace period."""
    docs = render(helm, values, BASE)
    (cm,) = by_kind(docs, "ConfigMap")
    assert not [k for k in cm["data"] if "STATIC" in k]
    for d in by_kind(docs, "Deployment"):
        stage = TOPO.stage(d["metadata"]["labels"]["pipeteer.io/stage"])
        assert d["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
        pod = d["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        assert not [e["name"] for e in c["env"] if "STATIC" in e["name"]]
        grace = pod["terminationGracePeriodSeconds"]
        assert grace == 30
        if stage.web:
            assert c["lifecycle"] == {"preStop": {"exec": {"command": ["sleep", "3"]}}}
            assert grace - 3 >= 10  # time left for the last commit after the pause
        else:
            assert "lifecycle" not in c  # nothing routes to an automatic stage: it stops at once
    edge = render(helm, values, [*BASE, "--set", "webPreStopSeconds=20"])  # 10 s left: enough
    assert {d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] for d in by_kind(edge, "Deployment")} == {30}
    no_pause = render(helm, values, [*BASE, "--set", "webPreStopSeconds=0"])
    assert all("lifecycle" not in d["spec"]["template"]["spec"]["containers"][0] for d in by_kind(no_pause, "Deployment"))

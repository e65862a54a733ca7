"""The chart on a real Kubernetes API server, in a namespace that enforces Pod Security "restricted".

test_helm.py checks rendered manifests against published schemas, offline; that cannot see what only
a server does: Helm's kubeVersion check against a live /version, `--dry-run=server`, the server's
defaulting and merges on `helm upgrade` and `helm rollback`, and admission. Pod Security is enforced
on Pods only, and no controller-manager runs here to make Pods of the Deployments, so the tests make
each stage's Pod from its Deployment's pod template themselves and ask the server to admit it with
a server-side dry run (`dryRun=All`): accepted for the chart's values, forbidden for each unsafe value
the values schema refuses (which shows the schema is right to refuse it).

The server is the session's `kube_apiserver` (conftest.py, kube.py). The first session on a machine
builds it, about 6 minutes on two cores and more on a loaded one, inside the first test that asks
for it: hence the module's timeout. Every wait in these tests is bounded otherwise (Helm and HTTP
calls carry their own timeouts), so the generous limit does not hide a hang.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.deploy import kube
from tests.integration.deploy.conftest import REPO
from tests.integration.deploy.test_helm import CHART

pytestmark = pytest.mark.timeout(kube.BUILD_TIMEOUT + 600)

EXAMPLE_VALUES = REPO / "topologies" / "perspective_correction" / "compiled" / "helm" / "values.yaml"
STAGES = yaml.safe_load(EXAMPLE_VALUES.read_text())["stages"]
CHART_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
RELEASE = "pc"
REVIEWERS_SECRET = "pipeteer-reviewers"
BASE = [
    "--set", "kafka.bootstrap=kafka.example:9092",
    "--set", "image.repository=registry.example/pipeteer",
    "--set", f"auth.existingSecret={REVIEWERS_SECRET}",
]  # fmt: skip
V1 = [
    *BASE,
    "--set", "ingress.enabled=true",
    "--set", "ingress.host=pipeteer.example",
    "--set", "networkPolicy.ingressNamespaces={ingress-nginx}",
    "--set", "podDisruptionBudget.enabled=false",
]  # fmt: skip
"""The first release: an Ingress, no PodDisruptionBudgets (the second release swaps both)."""
SCALED = "validation"
V2 = [
    *BASE,
    "--set", "ingress.enabled=false",
    "--set", "networkPolicy.ingressNamespaces={ingress-nginx}",
    "--set", "podDisruptionBudget.enabled=true",
    "--set", f"stages.{SCALED}.replicas={STAGES[SCALED]['replicas'] + 1}",
    "--set", "env.PIPETEER_LOG_LEVEL=debug",
]  # fmt: skip
"""The second release, with the chart's next patch version (so the image tag changes too): one
stage scaled, an environment variable added, the Ingress removed, PodDisruptionBudgets added."""
V2_VERSION = "{}.{}.{}".format(*CHART_VERSION.split(".")[:2], int(CHART_VERSION.split(".")[2]) + 1)

# The kinds the chart renders without custom resources (no ServiceMonitor, PrometheusRule or KEDA
# here: their CRDs are not installed), and where the server lists them.
COLLECTIONS = {
    ("v1", "ConfigMap"): "/api/v1/namespaces/{ns}/configmaps",
    ("v1", "Service"): "/api/v1/namespaces/{ns}/services",
    ("v1", "ServiceAccount"): "/api/v1/namespaces/{ns}/serviceaccounts",
    ("apps/v1", "Deployment"): "/apis/apps/v1/namespaces/{ns}/deployments",
    ("policy/v1", "PodDisruptionBudget"): "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
    ("networking.k8s.io/v1", "NetworkPolicy"): "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
    ("networking.k8s.io/v1", "Ingress"): "/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers",
}


class Helm:
    """The real Helm binary, pointed at the test server, with its own config, cache and data dirs."""

    def __init__(self, binary: Path, cluster: kube.KubeCluster, home: Path) -> None:
        self.binary = binary
        self.env = {
            **os.environ,
            "KUBECONFIG": str(cluster.kubeconfig),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def run(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(self.binary), *args], capture_output=True, text=True, timeout=timeout,
                              env=self.env, stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def template(self, chart: Path, namespace: str, values: Sequence[str], *extra: str) -> list[dict[str, Any]]:
        out = self.run("template", RELEASE, str(chart), "--namespace", namespace, "-f", str(EXAMPLE_VALUES),
                       *values, *extra).stdout
        return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture(scope="module")
def cluster_helm(helm: Path, kube_apiserver: kube.KubeCluster,
                 tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(helm, kube_apiserver, tmp_path_factory.mktemp("helm-home"))


def restricted_namespace(cluster: kube.KubeCluster, name: str) -> str:
    """A new namespace that enforces (and warns and audits) Pod Security "restricted", latest version."""
    labels = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")}
    labels |= {f"pod-security.kubernetes.io/{mode}-version": "latest" for mode in ("enforce", "warn", "audit")}
    cluster.ok("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                              "metadata": {"name": name, "labels": labels}})
    return name


@pytest.fixture(scope="module")
def admission_namespace(kube_apiserver: kube.KubeCluster, cluster_helm: Helm) -> Iterator[str]:
    """A restricted namespace holding the ServiceAccount the chart's Pods name (admission looks it up)."""
    namespace = restricted_namespace(kube_apiserver, "pipeteer-admission")
    (account,) = [d for d in cluster_helm.template(CHART, namespace, BASE) if d["kind"] == "ServiceAccount"]
    kube_apiserver.ok("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", account)
    yield namespace


def pod_of(deployment: dict[str, Any]) -> dict[str, Any]:
    """The Pod a ReplicaSet of this Deployment would create: its pod template, under a name of its own."""
    template = copy.deepcopy(deployment["spec"]["template"])
    metadata = {k: v for k, v in template.get("metadata", {}).items() if k in ("labels", "annotations")}
    metadata["name"] = f"{deployment['metadata']['name'][:50]}-probe"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}


def admit(cluster: kube.KubeCluster, namespace: str, pod: dict[str, Any]) -> kube.Response:
    """Ask the server to create `pod` without storing it: every admission plugin runs (Pod Security too)."""
    return cluster.request("POST", f"/api/v1/namespaces/{namespace}/pods", pod, params={"dryRun": "All"})


def differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where `actual` (an object as the server holds it) lacks what `expected` (as rendered) says.

    The server adds defaults and bookkeeping (uid, managedFields, default protocols...), so a
    rendered object is compared as a subset; an empty map or list rendered is the same as absent.
    """
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: {actual!r} is not a map"] if expected or actual is not None else []
        return [d for k, v in expected.items() for d in differences(v, actual.get(k), f"{path}.{k}")]
    if isinstance(expected, list):
        if not expected and actual in (None, []):
            return []
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: {actual!r} is not the {len(expected)} items {expected!r}"]
        return [d for i, (e, a) in enumerate(zip(expected, actual, strict=True)) for d in differences(e, a, f"{path}[{i}]")]
    if expected is None:
        return []
    return [] if expected == actual else [f"{path}: {actual!r} != {expected!r}"]


def held_objects(cluster: kube.KubeCluster, namespace: str) -> dict[tuple[str, str], set[str]]:
    """The names of every object of the chart's kinds the server holds in the namespace."""
    return {
        kind: {item["metadata"]["name"] for item in cluster.ok("GET", path.format(ns=namespace))["items"]}
        for kind, path in COLLECTIONS.items()
    }


def expected_names(rendered: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    unknown = {(d["apiVersion"], d["kind"]) for d in rendered} - COLLECTIONS.keys()
    assert not unknown, f"the chart rendered kinds this test does not list: {unknown}"
    return {kind: {d["metadata"]["name"] for d in rendered if (d["apiVersion"], d["kind"]) == kind}
            for kind in COLLECTIONS}


def live_object(cluster: kube.KubeCluster, namespace: str, doc: dict[str, Any]) -> dict[str, Any]:
    """The server's copy of a rendered object."""
    path = COLLECTIONS[(doc["apiVersion"], doc["kind"])].format(ns=namespace) + "/" + doc["metadata"]["name"]
    found: dict[str, Any] = cluster.ok("GET", path)
    return found


def assert_server_holds(cluster: kube.KubeCluster, namespace: str, rendered: list[dict[str, Any]]) -> None:
    """The namespace holds exactly the rendered objects (none left over, none missing), each as rendered."""
    assert held_objects(cluster, namespace) == expected_names(rendered)
    for doc in rendered:
        assert differences(doc, live_object(cluster, namespace, doc)) == [], f"{doc['kind']}/{doc['metadata']['name']}"


def assert_stage_pods_admitted(cluster: kube.KubeCluster, namespace: str) -> None:
    """Every stage's stored Deployment makes a Pod the namespace admits, without a Pod Security warning."""
    deployments = stored_deployments(cluster, namespace)
    assert sorted(deployments) == sorted(STAGES)
    for deployment in deployments.values():
        answer = admit(cluster, namespace, pod_of(deployment))
        assert answer.status == 201, f"{deployment['metadata']['name']}: {answer.status} {answer.body}"
        assert answer.warnings == [], deployment["metadata"]["name"]
        assert answer.body["metadata"]["uid"], "a dry run answers with the Pod as it would be stored"
    assert cluster.ok("GET", f"/api/v1/namespaces/{namespace}/pods")["items"] == [], "a dry run stores nothing"


def second_version_of_the_chart(tmp: Path) -> Path:
    """A copy of the chart at version and appVersion V2_VERSION: an upgrade to a changed chart, not only values."""
    chart = tmp / "pipeteer"
    shutil.copytree(CHART, chart)
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    meta["version"] = meta["appVersion"] = V2_VERSION
    (chart / "Chart.yaml").write_text(yaml.safe_dump(meta))
    return chart


def history(helm: Helm, namespace: str) -> list[tuple[int, str, str, str]]:
    out = helm.run("history", RELEASE, "--namespace", namespace, "--output", "yaml").stdout
    return [(h["revision"], h["status"], h["chart"], h["description"]) for h in yaml.safe_load(out)]


def release_records(cluster: kube.KubeCluster, namespace: str) -> list[tuple[str, str]]:
    """Helm's records of the releases in the namespace (Secrets labelled owner=helm): (revision, status)."""
    items = cluster.ok("GET", f"/api/v1/namespaces/{namespace}/secrets", params={"labelSelector": "owner=helm"})["items"]
    return sorted((i["metadata"]["labels"]["version"], i["metadata"]["labels"]["status"]) for i in items)


def stored_deployments(cluster: kube.KubeCluster, namespace: str) -> dict[str, dict[str, Any]]:
    items = cluster.ok("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments")["items"]
    return {d["metadata"]["labels"]["pipeteer.io/stage"]: d for d in items}


# --- the tests ------------------------------------------------------------------------------------


def test_the_server_reports_the_release_it_was_built_from(kube_apiserver: kube.KubeCluster) -> None:
    """Helm checks the chart's kubeVersion against /version: an unstamped build says v0.0.0-master."""
    version = kube_apiserver.ok("GET", "/version")
    assert version["gitVersion"] == kube.KUBERNETES_VERSION
    assert (version["major"], version["minor"]) == tuple(kube.KUBERNETES_VERSION[1:].split(".")[:2])


def test_install_upgrade_and_rollback(kube_apiserver: kube.KubeCluster, cluster_helm: Helm, tmp_path: Path) -> None:
    """The release's life on a server: install, upgrade to a changed chart and values, roll back;
    each step first as a server dry run (which changes nothing), then for real. After each, the
    server holds exactly what the chart renders for that revision (nothing left over from another),
    and every stage's Pod would be admitted under Pod Security "restricted"."""
    cluster, helm = kube_apiserver, cluster_helm
    namespace = restricted_namespace(cluster, "pipeteer-release")
    cluster.ok("POST", f"/api/v1/namespaces/{namespace}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": REVIEWERS_SECRET},
        "stringData": {"tokens": "reviewer:not-a-real-token\n"}})
    chart2 = second_version_of_the_chart(tmp_path)
    first = helm.template(CHART, namespace, V1)
    second = helm.template(chart2, namespace, V2)
    nothing: dict[tuple[str, str], set[str]] = {kind: set() for kind in COLLECTIONS}
    ns = ["--namespace", namespace, "-f", str(EXAMPLE_VALUES)]

    # install: the dry run renders against the server and stores nothing
    dry = helm.run("install", RELEASE, str(CHART), *ns, *V1, "--dry-run=server")
    assert "kind: Deployment" in dry.stdout
    assert held_objects(cluster, namespace) == nothing
    assert release_records(cluster, namespace) == []
    installed = helm.run("install", RELEASE, str(CHART), *ns, *V1)
    assert release_records(cluster, namespace) == [("1", "deployed")]
    assert "PodSecurity" not in installed.stderr, installed.stderr
    assert_server_holds(cluster, namespace, first)
    assert_stage_pods_admitted(cluster, namespace)
    v1 = stored_deployments(cluster, namespace)

    # upgrade to the second release: the dry run leaves the first in place
    helm.run("upgrade", RELEASE, str(chart2), *ns, *V2, "--dry-run=server")
    assert_server_holds(cluster, namespace, first)
    assert release_records(cluster, namespace) == [("1", "deployed")]
    upgraded = helm.run("upgrade", RELEASE, str(chart2), *ns, *V2)
    assert "PodSecurity" not in upgraded.stderr, upgraded.stderr
    assert_server_holds(cluster, namespace, second)
    # (which tells the revisions apart: the first one's objects are not what the server holds now)
    assert held_objects(cluster, namespace) != expected_names(first)
    for doc in first:
        if doc["kind"] in ("Deployment", "ConfigMap"):
            assert differences(doc, live_object(cluster, namespace, doc)), doc["metadata"]["name"]
    assert_stage_pods_admitted(cluster, namespace)
    v2 = stored_deployments(cluster, namespace)
    for stage, deployment in v2.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == f"registry.example/pipeteer:{V2_VERSION}", stage
        (before,) = v1[stage]["spec"]["template"]["spec"]["containers"]
        assert before["image"] != container["image"]
        # the ConfigMap changed (an added variable): every stage's pods roll, through their template
        checksum = v1[stage]["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        assert deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"] != checksum, stage
        replicas = STAGES[stage]["replicas"] + (stage == SCALED)
        assert (v1[stage]["spec"]["replicas"], deployment["spec"]["replicas"]) == (STAGES[stage]["replicas"], replicas)

    # roll back to the first revision: the Ingress is back, the PodDisruptionBudgets are gone
    helm.run("rollback", RELEASE, "1", "--namespace", namespace, "--dry-run=server")
    assert_server_holds(cluster, namespace, second)
    assert release_records(cluster, namespace) == [("1", "superseded"), ("2", "deployed")]
    helm.run("rollback", RELEASE, "1", "--namespace", namespace)
    assert_server_holds(cluster, namespace, first)
    assert_stage_pods_admitted(cluster, namespace)
    assert [(r, s, c) for r, s, c, _ in history(helm, namespace)] == [
        (1, "superseded", f"pipeteer-{CHART_VERSION}"),
        (2, "superseded", f"pipeteer-{V2_VERSION}"),
        (3, "deployed", f"pipeteer-{CHART_VERSION}"),
    ]
    assert history(helm, namespace)[-1][3] == "Rollback to 1"


def test_the_charts_pods_are_admitted_where_restricted_is_enforced(
    kube_apiserver: kube.KubeCluster, cluster_helm: Helm, admission_namespace: str
) -> None:
    """The control of the next test: the same namespace admits the chart's Pods with its own values."""
    deployments = [d for d in cluster_helm.template(CHART, admission_namespace, BASE) if d["kind"] == "Deployment"]
    assert len(deployments) == len(STAGES)
    for deployment in deployments:
        answer = admit(kube_apiserver, admission_namespace, pod_of(deployment))
        assert (answer.status, answer.warnings) == (201, []), answer.body


def unsafe(name: str, values: list[str], schema_says: str, server_says: str, status: int = 403) -> Any:
    """A case of values that weaken the pods' security: what the values schema says of them, and
    what the server says of such a Pod in a namespace enforcing "restricted" (403: Pod Security
    forbids it, naming the check; 422: the Pod is invalid before Pod Security is asked)."""
    return pytest.param(values, schema_says, server_says, status, id=name)


UNSAFE = [
    # the hole found: the container's seccomp profile was not checked (only the pod's)
    unsafe("container-seccomp-unconfined", ["--set", "securityContext.seccompProfile.type=Unconfined"],
           "'/securityContext/seccompProfile/type'", 'must not set securityContext.seccompProfile.type to "Unconfined"'),
    unsafe("pod-seccomp-unconfined", ["--set", "podSecurityContext.seccompProfile.type=Unconfined"],
           "'/podSecurityContext/seccompProfile/type'", 'pod must not set securityContext.seccompProfile.type'),
    unsafe("no-container-context", ["--set", "securityContext=null"],
           "missing property 'securityContext'", "allowPrivilegeEscalation != false"),
    unsafe("privilege-escalation", ["--set", "securityContext.allowPrivilegeEscalation=true"],
           "'/securityContext/allowPrivilegeEscalation'", "allowPrivilegeEscalation != false"),
    # (privileged implies privilege escalation: the server finds one without the other invalid)
    unsafe("privileged", ["--set", "securityContext.privileged=true", "--set", "securityContext.allowPrivilegeEscalation=true"],
           "'/securityContext/privileged'", 'privileged (container "stage" must not set securityContext.privileged=true)'),
    unsafe("capabilities-add", ["--set", "securityContext.capabilities.add={NET_RAW}"],
           "'/securityContext/capabilities/add'", 'must not include "NET_RAW" in securityContext.capabilities.add'),
    unsafe("capabilities-drop-not-all", ["--set", "securityContext.capabilities.drop={NET_RAW}"],
           "'/securityContext/capabilities/drop'", 'must set securityContext.capabilities.drop=["ALL"]'),
    unsafe("container-run-as-root", ["--set", "securityContext.runAsNonRoot=false"],
           "'/securityContext/runAsNonRoot'", "runAsNonRoot != true"),
    unsafe("pod-run-as-root", ["--set", "podSecurityContext.runAsNonRoot=false", "--set", "securityContext.runAsNonRoot=null"],
           "'/podSecurityContext/runAsNonRoot'", "pod must not set securityContext.runAsNonRoot=false"),
    unsafe("container-uid-0", ["--set", "securityContext.runAsUser=0"],
           "'/securityContext/runAsUser'", "must not set runAsUser=0"),
    unsafe("pod-uid-0", ["--set", "podSecurityContext.runAsUser=0", "--set", "securityContext.runAsUser=null"],
           "'/podSecurityContext/runAsUser'", "pod must not set runAsUser=0"),
    # the chart's pods share the host's user namespace, where an unmasked /proc is invalid outright
    unsafe("proc-mount-unmasked", ["--set", "securityContext.procMount=Unmasked"],
           "'/securityContext/procMount'", "securityContext.procMount: Invalid value", status=422),
    unsafe("selinux-spc", ["--set", "securityContext.seLinuxOptions.type=spc_t"],
           "'/securityContext/seLinuxOptions/type'", 'forbidden securityContext.seLinuxOptions: type "spc_t"'),
    unsafe("selinux-user", ["--set", "podSecurityContext.seLinuxOptions.user=system_u"],
           "'/podSecurityContext/seLinuxOptions'", "seLinuxOptions: user may not be set"),
    unsafe("apparmor-unconfined", ["--set", "securityContext.appArmorProfile.type=Unconfined"],
           "'/securityContext/appArmorProfile/type'", 'must not set AppArmor profile type to "Unconfined"'),
    unsafe("apparmor-annotation",
           ["--set", "podAnnotations.container\\.apparmor\\.security\\.beta\\.kubernetes\\.io/stage=unconfined"],
           "invalid propertyName 'container.apparmor.security.beta.kubernetes.io/stage'",
           'annotation must not set AppArmor profile type to "Unconfined"'),
    # the legacy seccomp annotation contradicts the profile in the security context: invalid
    unsafe("seccomp-annotation",
           ["--set", "podAnnotations.seccomp\\.security\\.alpha\\.kubernetes\\.io/pod=unconfined"],
           "invalid propertyName 'seccomp.security.alpha.kubernetes.io/pod'",
           "seccomp type in annotation and field must match", status=422),
    unsafe("unsafe-sysctl", ["--set", "podSecurityContext.sysctls[0].name=kernel.msgmax",
                             "--set-string", "podSecurityContext.sysctls[0].value=65536"],
           "'/podSecurityContext/sysctls/0/name'", "forbidden sysctls (kernel.msgmax)"),
]


@pytest.mark.parametrize(("values", "schema_says", "server_says", "status"), UNSAFE)
def test_unsafe_security_values_are_refused_and_the_server_would_forbid_them(
    kube_apiserver: kube.KubeCluster, cluster_helm: Helm, admission_namespace: str,
    values: list[str], schema_says: str, server_says: str, status: int,
) -> None:
    """The values schema refuses each value with the field it is about; rendered anyway (schema
    skipped), the chart's Pods are refused by the server: the schema is right to refuse them,
    before `helm install` creates Deployments whose Pods would never start."""
    refused = cluster_helm.run("template", RELEASE, str(CHART), "--namespace", admission_namespace,
                               "-f", str(EXAMPLE_VALUES), *BASE, *values, check=False)
    assert refused.returncode != 0
    assert "values don't meet the specifications of the schema" in refused.stderr
    assert schema_says in refused.stderr, refused.stderr
    installed = cluster_helm.run("install", RELEASE, str(CHART), "--namespace", admission_namespace,
                                 "-f", str(EXAMPLE_VALUES), *BASE, *values, "--dry-run=server", check=False)
    assert installed.returncode != 0 and schema_says in installed.stderr, installed.stderr
    deployments = [d for d in cluster_helm.template(CHART, admission_namespace, BASE, *values,
                                                    "--skip-schema-validation") if d["kind"] == "Deployment"]
    assert len(deployments) == len(STAGES)
    for deployment in deployments:
        answer = admit(kube_apiserver, admission_namespace, pod_of(deployment))
        assert answer.status == status, f"{deployment['metadata']['name']}: {answer.status} {answer.body}"
        assert server_says in answer.body["message"], answer.body["message"]
        if status == 403:
            assert 'violates PodSecurity "restricted:latest"' in answer.body["message"]


def test_without_the_schema_an_unconfined_release_installs_and_none_of_its_pods_could_start(
    kube_apiserver: kube.KubeCluster, cluster_helm: Helm
) -> None:
    """Why the schema must refuse: Pod Security only warns about a Deployment, so `helm install`
    of the hole found (a container's seccomp profile `Unconfined`) succeeds, and then every Pod its
    ReplicaSets would create is forbidden: a release that looks installed and never runs."""
    namespace = restricted_namespace(kube_apiserver, "pipeteer-unconfined")
    unconfined = ["--set", "securityContext.seccompProfile.type=Unconfined", "--skip-schema-validation"]
    installed = cluster_helm.run("install", RELEASE, str(CHART), "--namespace", namespace, "-f", str(EXAMPLE_VALUES),
                                 *BASE, *unconfined)
    warned = [line for line in installed.stderr.splitlines()
              if "would violate PodSecurity" in line and "restricted:latest" in line and "Unconfined" in line]
    deployments = stored_deployments(kube_apiserver, namespace)
    assert sorted(deployments) == sorted(STAGES) and len(warned) == len(STAGES), installed.stderr
    account = kube_apiserver.ok("GET", f"/api/v1/namespaces/{namespace}/serviceaccounts")["items"]
    assert len(account) == 1  # (admission would refuse a Pod naming a missing one, for another reason)
    for deployment in deployments.values():
        answer = admit(kube_apiserver, namespace, pod_of(deployment))
        assert answer.status == 403, answer.body
        assert 'must not set securityContext.seccompProfile.type to "Unconfined"' in answer.body["message"]

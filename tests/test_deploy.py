"""Static checks of the deployment files: deploy/ and docker-compose.yml.

No Docker engine or Kubernetes cluster is needed: the files are parsed and
cross-checked against each other, against examples/jobs/*.yaml and, where the
binaries are built, against their --help. Checks that need a tool
(docker-compose, kubectl, systemd-analyze, apt-cache, dpkg) are skipped when
the tool is absent.
"""

import configparser
import glob
import os
import re
import shutil
import subprocess
import tempfile

import pytest

yaml = pytest.importorskip("yaml")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy")
K8S = os.path.join(DEPLOY, "k8s")
SYSTEMD = os.path.join(DEPLOY, "systemd")
COMPOSE_FILE = os.path.join(ROOT, "docker-compose.yml")
DOCKERFILE = os.path.join(DEPLOY, "Dockerfile")
# The flagship jobs every deployment carries (benchmark jobs such as Nexmark's
# queries are not deployed).
JOB_FILES = [os.path.join(ROOT, "examples", "jobs", name)
             for name in ("fraud.yaml", "pageviews.yaml", "sessions.yaml")]
BUILD_DIR = os.environ.get("SLUICE_BUILD_DIR", os.path.join(ROOT, "build"))

CHECKPOINT_MOUNT = "/shared/checkpoints"
CHECKPOINT_URI = "file:///shared/checkpoints"
WORKER_FLAGS = ["--coordinator", "--worker-id", "--brokers", "--data-dir", "--checkpoint-dir"]
COORDINATOR_FLAGS = ["--listen", "--brokers", "--data-dir"]

# Binary name -> path under the build directory (as deploy/Dockerfile copies them).
BINARIES = {
    "sluice-coordinator": "coordinator/sluice-coordinator",
    "sluice-worker": "worker/sluice-worker",
    "sluicectl": "cli/sluicectl",
    "sluice-run": "tools/sluice-run",
    "sluice-loadgen": "tools/sluice-loadgen",
    "sluice-devbroker": "tools/devbroker/sluice-devbroker",
}


# ---------------------------------------------------------------- helpers


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def k8s_manifest_files():
    return sorted(
        os.path.basename(p)
        for p in glob.glob(os.path.join(K8S, "*.yaml")) + glob.glob(os.path.join(K8S, "*.yml"))
        if os.path.basename(p) not in ("kustomization.yaml", "kustomization.yml")
    )


def k8s_docs():
    docs = []
    for name in k8s_manifest_files():
        for d in load_all(os.path.join(K8S, name)):
            docs.append((name, d))
    return docs


def k8s_find(kind, name=None):
    found = [d for _, d in k8s_docs() if d.get("kind") == kind
             and (name is None or d["metadata"]["name"] == name)]
    assert found, f"no {kind} {name or ''} in deploy/k8s"
    return found


def compose():
    with open(COMPOSE_FILE) as f:
        return yaml.safe_load(f)


def job_specs():
    specs = []
    for path in JOB_FILES:
        with open(path) as f:
            specs.append((path, yaml.safe_load(f)))
    return specs


def job_topics():
    """Every topic the example jobs read or write, with the loader's defaults
    for the late and dead-letter sinks (jobspec/job_loader.cc)."""
    topics = {}
    for path, spec in job_specs():
        name = spec["name"]
        sinks = dict(spec.get("sinks") or {})
        sinks.setdefault("late", f"{name}-late")
        sinks.setdefault("dead_letter", f"{name}-dlq")
        topics[spec["source"]["topic"]] = path
        for topic in sinks.values():
            topics[topic] = path
    return topics


def flag_values(argv):
    """{flag: value} of an argv list, accepting '--flag value' and '--flag=value'."""
    out = {}
    i = 0
    while i < len(argv):
        a = str(argv[i])
        if a.startswith("--"):
            if "=" in a:
                k, v = a.split("=", 1)
                out[k] = v
            elif i + 1 < len(argv) and not str(argv[i + 1]).startswith("--"):
                out[a] = str(argv[i + 1])
                i += 1
            else:
                out[a] = None
        i += 1
    return out


def as_argv(command):
    if command is None:
        return []
    if isinstance(command, str):
        return command.split()
    return [str(c) for c in command]


# Where each program declares its command-line options.
OPTION_SOURCES = {
    # common/daemon.cc declares the flags every daemon shares; common/security_flags.cc
    # the TLS flags of the coordinator and the workers.
    "sluice-coordinator": ["coordinator/main.cc", "coordinator/*options*.cc", "common/daemon.cc",
                           "common/security_flags.cc"],
    "sluice-worker": ["worker/main.cc", "worker/*options*.cc", "common/daemon.cc",
                      "common/security_flags.cc"],
    "sluice-loadgen": ["tools/sluice_loadgen.cc", "tools/loadgen*.cc", "tools/loadgen/*.cc"],
}


def source_flags(binary):
    """Long options a program declares in its sources ("--name" string
    literals in OPTION_SOURCES), or None when those are not written yet.
    Sources rather than --help: a stale build would give false failures."""
    sources = sorted({p for pattern in OPTION_SOURCES[binary]
                      for p in glob.glob(os.path.join(ROOT, pattern))})
    text = ""
    for path in sources:
        with open(path) as f:
            text += f.read()
    if '"--' not in text:
        return None
    return set(re.findall(r'"(--[a-z][a-z0-9-]*)"', text))


def pod_spec(doc):
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "DaemonSet", "CronJob")


def workloads():
    return [(f, d) for f, d in k8s_docs() if d.get("kind") in WORKLOAD_KINDS]


def resolve_env(container, value):
    """Substitute $(VAR) references the way the kubelet does, using the
    container's env (literal values and ConfigMap keys)."""
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in k8s_find("ConfigMap")}
    env = {}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = str(e["value"])
        else:
            ref = e.get("valueFrom", {}).get("configMapKeyRef")
            if ref:
                env[e["name"]] = str(configmaps[ref["name"]][ref["key"]])
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)),
                  value)


# ---------------------------------------------------------------- Kubernetes


def test_k8s_every_document_has_api_version_kind_and_name():
    docs = k8s_docs()
    assert docs, "no manifests in deploy/k8s"
    for name, d in docs:
        assert isinstance(d, dict), name
        assert d.get("apiVersion"), f"{name}: a document without apiVersion"
        assert d.get("kind"), f"{name}: a document without kind"
        assert d.get("metadata", {}).get("name"), f"{name}: {d.get('kind')} without metadata.name"
        # Namespace-agnostic: `kubectl apply -k ... -n NS` chooses the namespace.
        assert "namespace" not in d["metadata"], f"{name}: {d['kind']} pins a namespace"


def test_k8s_names_are_unique_per_kind():
    seen = set()
    for name, d in k8s_docs():
        key = (d["kind"], d["metadata"]["name"])
        assert key not in seen, f"{name}: duplicate {key}"
        seen.add(key)


def test_kustomization_lists_exactly_the_manifests():
    with open(os.path.join(K8S, "kustomization.yaml")) as f:
        k = yaml.safe_load(f)
    assert k["kind"] == "Kustomization"
    resources = k.get("resources", [])
    assert len(resources) == len(set(resources)), "a resource listed twice"
    for r in resources:
        assert os.path.isfile(os.path.join(K8S, r)), f"kustomization lists missing {r}"
    assert sorted(resources) == k8s_manifest_files(), "kustomization and deploy/k8s/*.yaml differ"
    assert "namespace" not in k, "the kustomization should not pin a namespace"


def test_k8s_selectors_match_pod_labels():
    for name, d in workloads():
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
            selector = d["spec"]["selector"]["matchLabels"]
            labels = d["spec"]["template"]["metadata"]["labels"]
            for k, v in selector.items():
                assert labels.get(k) == v, f"{name}: selector {k}={v} does not match the pod labels"
    pod_labels = [d["spec"]["template"]["metadata"].get("labels", {}) for _, d in workloads()]
    for svc in k8s_find("Service"):
        sel = svc["spec"].get("selector", {})
        assert sel, f"Service {svc['metadata']['name']} selects nothing"
        assert any(all(l.get(k) == v for k, v in sel.items()) for l in pod_labels), \
            f"Service {svc['metadata']['name']} selects no pod template"


def test_k8s_containers_have_resources_and_references_resolve():
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in k8s_find("ConfigMap")}
    pvcs = {d["metadata"]["name"] for d in k8s_find("PersistentVolumeClaim")}
    for name, d in workloads():
        spec = pod_spec(d)
        templates = {t["metadata"]["name"] for t in d["spec"].get("volumeClaimTemplates", [])}
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec.get("initContainers", []) + spec["containers"]:
            where = f"{name}: {d['kind']} {d['metadata']['name']} container {c['name']}"
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res.get(part, {})), f"{where}: resources.{part}"
            assert c.get("image"), where
            defined = set()
            for e in c.get("env", []):
                defined.add(e["name"])
                ref = e.get("valueFrom", {}).get("configMapKeyRef")
                if ref:
                    assert ref["name"] in configmaps, f"{where}: ConfigMap {ref['name']} missing"
                    assert ref["key"] in configmaps[ref["name"]], \
                        f"{where}: key {ref['key']} missing in ConfigMap {ref['name']}"
            for arg in c.get("command", []) + c.get("args", []):
                for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", str(arg)):
                    assert var in defined, f"{where}: $({var}) used but not in env"
            for m in c.get("volumeMounts", []):
                assert m["name"] in volumes or m["name"] in templates, \
                    f"{where}: mounts undefined volume {m['name']}"
        for v in volumes.values():
            if "persistentVolumeClaim" in v:
                assert v["persistentVolumeClaim"]["claimName"] in pvcs, \
                    f"{name}: PVC {v['persistentVolumeClaim']['claimName']} not defined"
            if "configMap" in v:
                assert v["configMap"]["name"] in configmaps, \
                    f"{name}: ConfigMap {v['configMap']['name']} not defined"


def test_k8s_worker_statefulset():
    (sts,) = k8s_find("StatefulSet")
    spec = pod_spec(sts)
    assert spec.get("terminationGracePeriodSeconds", 30) >= 60
    headless = [s for s in k8s_find("Service") if s["metadata"]["name"] == sts["spec"]["serviceName"]]
    assert headless and headless[0]["spec"].get("clusterIP") == "None", \
        "the StatefulSet's serviceName must be a headless Service"
    (c,) = [c for c in spec["containers"] if "sluice-worker" in as_argv(c.get("command"))
            + as_argv(c.get("args"))]
    argv = as_argv(c.get("command")) + as_argv(c.get("args"))
    flags = flag_values(argv)
    for flag in WORKER_FLAGS:
        assert flags.get(flag), f"worker container lacks {flag}"
    # The worker id comes from the pod name through the downward API.
    m = re.fullmatch(r"\$\((\w+)\)", flags["--worker-id"])
    assert m, "--worker-id should be $(VAR) from the downward API"
    (env,) = [e for e in c["env"] if e["name"] == m.group(1)]
    assert env["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert resolve_env(c, flags["--checkpoint-dir"]) == CHECKPOINT_URI
    assert resolve_env(c, flags["--coordinator"]).endswith(":7070")
    # The checkpoint directory is the shared ReadWriteMany PVC.
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    vol = volumes[mounts[CHECKPOINT_MOUNT]]
    assert vol["persistentVolumeClaim"]["claimName"] == "sluice-checkpoints"
    (pvc,) = k8s_find("PersistentVolumeClaim", "sluice-checkpoints")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    # The data dir is a per-pod volume from volumeClaimTemplates.
    templates = {t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]}
    assert mounts[flags["--data-dir"]] in templates


def test_k8s_coordinator():
    (dep,) = k8s_find("Deployment")
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"].get("strategy", {}).get("type") == "Recreate", \
        "two coordinators must never run at once"
    spec = pod_spec(dep)
    (c,) = spec["containers"]
    argv = as_argv(c.get("command")) + as_argv(c.get("args"))
    assert argv[0] == "sluice-coordinator"
    flags = flag_values(argv)
    for flag in COORDINATOR_FLAGS:
        assert flags.get(flag), f"coordinator lacks {flag}"
    assert flags["--listen"].endswith(":7070")
    probe = c["livenessProbe"]["tcpSocket"]["port"]
    assert probe in (7070, "grpc")
    assert any(p["containerPort"] == 7070 for p in c["ports"])
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "persistentVolumeClaim" in volumes[mounts[flags["--data-dir"]]], \
        "the coordinator's data dir must be on a PVC"
    (svc,) = k8s_find("Service", "sluice-coordinator")
    assert any(p["port"] == 7070 for p in svc["spec"]["ports"])
    # Every address of the coordinator used in the manifests names this Service.
    (cfg,) = k8s_find("ConfigMap", "sluice-config")
    assert cfg["data"]["SLUICE_COORDINATOR"] == "sluice-coordinator:7070"


def test_k8s_jobs_configmap_matches_examples_and_submit_job():
    (cm,) = k8s_find("ConfigMap", "sluice-jobs")
    for path in JOB_FILES:
        with open(path) as f:
            assert cm["data"].get(os.path.basename(path)) == f.read(), \
                f"sluice-jobs ConfigMap differs from {path}"
    (cfg,) = k8s_find("ConfigMap", "sluice-config")
    for job in cfg["data"]["SLUICE_SUBMIT_JOBS"].split():
        assert f"{job}.yaml" in cm["data"], f"SLUICE_SUBMIT_JOBS names {job}, not in sluice-jobs"
    (job,) = k8s_find("Job")
    spec = pod_spec(job)
    assert spec["restartPolicy"] in ("OnFailure", "Never")
    vols = {v["name"]: v for v in spec["volumes"]}
    (c,) = spec["containers"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert vols[mounts["/etc/sluice/jobs"]]["configMap"]["name"] == "sluice-jobs"
    assert "sluicectl" in " ".join(as_argv(c.get("command")) + as_argv(c.get("args")))


def test_k8s_pods_run_as_the_image_user():
    for name, d in workloads():
        sc = pod_spec(d).get("securityContext", {})
        assert sc.get("runAsNonRoot") is True, name
        assert sc.get("runAsUser") == 10001, name


def test_kubectl_kustomize_builds():
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl not installed")
    r = subprocess.run([kubectl, "kustomize", K8S], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    kinds = {d["kind"] for d in yaml.safe_load_all(r.stdout) if d}
    assert {"Deployment", "StatefulSet", "Service", "ConfigMap", "PersistentVolumeClaim",
            "Job"} <= kinds


# ---------------------------------------------------------------- Compose


def test_compose_topics_service_creates_every_job_topic():
    c = compose()
    topics_env = c["services"]["topics"]["environment"]["TOPICS"]
    created = {}
    for spec in topics_env.split():
        name, parts = spec.split(":")
        assert name not in created, f"topic {name} created twice"
        created[name] = int(parts)
    for topic, path in job_topics().items():
        assert topic in created, f"{path} uses topic {topic}, not created by the topics service"
    for topic in ("payments", "clicks"):
        assert created[topic] == 8
    cmd = " ".join(as_argv(c["services"]["topics"]["command"]))
    assert "kafka-topics.sh" in cmd and "--create" in cmd and "TOPICS" in cmd


def test_compose_volumes_and_bind_mounts_are_defined():
    c = compose()
    defined = set((c.get("volumes") or {}).keys())
    used = set()
    for svc_name, svc in c["services"].items():
        for v in svc.get("volumes", []):
            source = v["source"] if isinstance(v, dict) else v.split(":")[0]
            if isinstance(v, str) and ":" not in v:
                continue  # anonymous volume
            if source.startswith((".", "/", "~")):
                assert os.path.exists(os.path.join(ROOT, source)), \
                    f"{svc_name}: bind mount {source} does not exist"
            else:
                assert source in defined, f"{svc_name}: volume {source} not in top-level volumes"
                used.add(source)
    assert defined <= used, f"volumes never used: {defined - used}"


def test_compose_depends_on_conditions_are_satisfiable():
    c = compose()
    services = c["services"]
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        for dep, cond in deps.items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            condition = cond.get("condition", "service_started")
            assert condition in ("service_started", "service_healthy",
                                 "service_completed_successfully"), condition
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep}'s missing healthcheck"
            if condition == "service_completed_successfully":
                assert services[dep].get("restart", "no") == "no", f"{dep} is not a one-shot"


def test_compose_sluice_services():
    c = compose()
    services = c["services"]
    assert services["kafka"]["image"] == "apache/kafka:3.7.0"
    env = services["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert "localhost:29092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert str(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == "1"
    for svc in services.values():
        if "build" in svc:
            dockerfile = os.path.join(ROOT, svc["build"]["context"], svc["build"]["dockerfile"])
            assert os.path.isfile(dockerfile)

    coord = flag_values(as_argv(services["coordinator"]["command"]))
    assert as_argv(services["coordinator"]["command"])[0] == "sluice-coordinator"
    for flag in COORDINATOR_FLAGS:
        assert coord.get(flag), f"coordinator lacks {flag}"

    workers = {n: s for n, s in services.items()
               if as_argv(s.get("command"))[:1] == ["sluice-worker"]}
    assert len(workers) >= 2
    ids, data_volumes = set(), set()
    for name, svc in workers.items():
        flags = flag_values(as_argv(svc["command"]))
        for flag in WORKER_FLAGS:
            assert flags.get(flag), f"{name} lacks {flag}"
        assert flags["--coordinator"] == "coordinator:7070"
        assert flags["--checkpoint-dir"] == CHECKPOINT_URI
        assert flags["--worker-id"] not in ids, "worker ids must be unique"
        ids.add(flags["--worker-id"])
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
        assert mounts[CHECKPOINT_MOUNT] == "checkpoints"
        data = mounts[flags["--data-dir"]]
        assert data not in data_volumes, "each worker needs its own data volume"
        data_volumes.add(data)
        assert svc.get("stop_grace_period") in ("60s", "1m"), name

    submit = " ".join(as_argv(services["submit"]["command"]))
    for job in ("fraud", "sessions"):
        assert os.path.isfile(os.path.join(ROOT, "examples", "jobs", f"{job}.yaml"))
    assert "sluicectl" in submit and "submit" in submit
    assert re.search(r"for job in fraud sessions", submit)
    loadgen = " ".join(as_argv(services["loadgen"]["command"]))
    for topic in ("payments", "clicks"):
        assert f"--topic {topic}" in loadgen


def test_docker_compose_config():
    exe = shutil.which("docker-compose")
    if not exe:
        pytest.skip("docker-compose not installed")
    r = subprocess.run([exe, "-f", COMPOSE_FILE, "config", "-q"], capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------- flags vs the binaries


def all_deploy_invocations():
    """(binary, argv) of every Sluice program started by compose and k8s."""
    out = []
    for svc in compose()["services"].values():
        argv = as_argv(svc.get("command"))
        if argv and argv[0] in BINARIES:
            out.append((argv[0], argv[1:]))
    for _, d in workloads():
        for c in pod_spec(d)["containers"]:
            argv = as_argv(c.get("command")) + as_argv(c.get("args"))
            if argv and argv[0] in BINARIES:
                out.append((argv[0], argv[1:]))
    return out


def systemd_exec_start(name):
    exec_start = unit(name)["Service"]["ExecStart"]
    return exec_start.replace("\\\n", " ").replace("\\", " ").split()


@pytest.mark.parametrize("binary", ["sluice-coordinator", "sluice-worker", "sluice-loadgen"])
def test_deploy_flags_are_declared_by_the_programs(binary):
    known = source_flags(binary)
    if known is None:
        pytest.skip(f"{binary}: no sources with options yet")
    invocations = [argv for b, argv in all_deploy_invocations() if b == binary]
    for name in UNITS:
        argv = systemd_exec_start(name)
        if os.path.basename(argv[0]) == binary:
            invocations.append(argv[1:])
    if binary == "sluice-loadgen":
        loadgen = " ".join(as_argv(compose()["services"]["loadgen"]["command"]))
        invocations += [line.split()[1:] for line in loadgen.split("&") if "sluice-loadgen" in line]
    assert invocations
    for argv in invocations:
        for flag in flag_values(argv):
            assert flag in known, f"{binary} declares no {flag}"


# ---------------------------------------------------------------- Dockerfile


def dockerfile_text():
    with open(DOCKERFILE) as f:
        return f.read()


def runtime_packages():
    text = dockerfile_text()
    runtime = text[text.index("FROM debian:bookworm-slim"):]
    m = re.search(r"apt-get install[^\n]*?--no-install-recommends((?:[^\n]*\\\n)+[^\n]*)", runtime)
    assert m, "no apt-get install in the runtime stage"
    words = m.group(1).replace("\\\n", " ").split("&&")[0].split()
    return [w for w in words if not w.startswith("-")]


def test_dockerfile_structure():
    text = dockerfile_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert froms[0] == "debian:bookworm" and froms[-1] == "debian:bookworm-slim"
    assert "scripts/setup.sh" in text
    assert "-DSLUICE_BUILD_TESTS=OFF" in text and "-DCMAKE_BUILD_TYPE=Release" in text
    assert re.search(r"cmake -S \. -B build -G Ninja", text)
    assert re.search(r"^USER sluice", text, re.M)
    assert re.search(r"^EXPOSE 7070", text, re.M)
    assert "/etc/sluice/jobs" in text
    for binary, path in BINARIES.items():
        assert path in text, f"the Dockerfile does not install {binary}"
    for binary, _ in all_deploy_invocations():
        assert binary in BINARIES
    with open(os.path.join(ROOT, ".dockerignore")) as f:
        ignored = f.read().split()
    assert ".git" in ignored and "build*/" in ignored


def test_dockerfile_runtime_packages_exist():
    apt_cache = shutil.which("apt-cache")
    if not apt_cache:
        pytest.skip("apt-cache not installed")
    pkgs = runtime_packages()
    assert "libgrpc++1.51" in pkgs and "librocksdb7.8" in pkgs
    r = subprocess.run([apt_cache, "show", "--no-all-versions"] + pkgs, capture_output=True,
                       text=True, timeout=120)
    found = set(re.findall(r"^Package: (\S+)", r.stdout, re.M))
    for p in pkgs:
        assert p in found, f"no Debian package {p}: {r.stderr.strip()}"


def test_dockerfile_runtime_packages_cover_the_built_binaries():
    """Every shared library a built binary links comes from a runtime package
    or one of their dependencies (skips binaries not built yet)."""
    if not (shutil.which("apt-cache") and shutil.which("dpkg") and shutil.which("ldd")):
        pytest.skip("apt-cache, dpkg or ldd not installed")
    built = [os.path.join(BUILD_DIR, p) for p in BINARIES.values()
             if os.access(os.path.join(BUILD_DIR, p), os.X_OK)]
    if not built:
        pytest.skip(f"no binaries built in {BUILD_DIR}")
    r = subprocess.run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
                        "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances"]
                       + runtime_packages(), capture_output=True, text=True, timeout=120)
    closure = {line.strip() for line in r.stdout.splitlines() if not line.startswith(" ")}
    libs = {}  # library path -> binary
    for binary in built:
        ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=60).stdout
        for lib in re.findall(r"=> (/\S+)", ldd):
            libs.setdefault(lib, os.path.basename(binary))
    # dpkg knows a file under the path it was installed as; with merged /usr
    # that may differ from the loader's, so ask for each variant in one call.
    variants = {}
    for lib in libs:
        real = os.path.realpath(lib)
        for v in (lib, real, "/usr" + real, real.removeprefix("/usr")):
            variants[v] = lib
    q = subprocess.run(["dpkg", "-S"] + sorted(variants), capture_output=True, text=True,
                       timeout=120)
    owners = {}
    for line in q.stdout.splitlines():
        pkg, _, path = line.partition(": ")
        if path in variants and not pkg.startswith("diversion"):
            owners[variants[path]] = pkg.split(":")[0]
    for lib, binary in sorted(libs.items()):
        if lib not in owners:
            continue  # not from a package (e.g. a library of the build tree)
        assert owners[lib] in closure, \
            f"{binary} links {lib} from {owners[lib]}, not in the runtime stage"


# ---------------------------------------------------------------- systemd


def unit(name):
    p = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    p.optionxform = str
    with open(os.path.join(SYSTEMD, name)) as f:
        p.read_string(f.read())
    return p


UNITS = ["sluice-coordinator.service", "sluice-worker@.service"]


@pytest.mark.parametrize("name", UNITS)
def test_systemd_unit_required_keys(name):
    u = unit(name)
    assert {"Unit", "Service", "Install"} <= set(u.sections())
    s = u["Service"]
    assert s["Restart"] == "on-failure"
    assert s["KillSignal"] == "SIGTERM"
    assert s["TimeoutStopSec"] == "60"
    assert s["User"] == "sluice"
    assert s.get("StateDirectory")
    assert s["EnvironmentFile"].lstrip("-") == "/etc/sluice/sluice.env"
    assert u["Install"]["WantedBy"] == "multi-user.target"
    exec_start = s["ExecStart"].replace("\\\n", " ").replace("\\", " ")
    argv = exec_start.split()
    binary = os.path.basename(argv[0])
    assert binary in BINARIES
    flags = flag_values(argv[1:])
    for flag in (WORKER_FLAGS if binary == "sluice-worker" else COORDINATOR_FLAGS):
        assert flags.get(flag), f"{name} lacks {flag}"
    # The data dir is the unit's StateDirectory.
    state = s["StateDirectory"].split()[0]
    assert flags["--data-dir"] == f"%S/{state}"
    if binary == "sluice-worker":
        assert flags["--worker-id"] == "%i"
    # Every variable ExecStart uses has a default in the unit and is in sluice.env.
    defaults = set(re.findall(r"(\w+)=", s["Environment"]))
    with open(os.path.join(SYSTEMD, "sluice.env")) as f:
        env_file = set(re.findall(r"^(\w+)=", f.read(), re.M))
    for var in re.findall(r"\$\{?(\w+)\}?", exec_start):
        assert var in defaults, f"{name}: ${var} has no Environment= default"
        assert var in env_file, f"{name}: ${var} is not in sluice.env"


def test_systemd_env_example():
    with open(os.path.join(SYSTEMD, "sluice.env")) as f:
        text = f.read()
    values = dict(re.findall(r"^(\w+)=(.*)$", text, re.M))
    for key in ("SLUICE_BROKERS", "SLUICE_COORDINATOR", "SLUICE_CHECKPOINTS"):
        assert values.get(key), f"sluice.env lacks {key}"
    assert values["SLUICE_CHECKPOINTS"] == CHECKPOINT_URI
    assert not re.search(r"^export ", text, re.M), "EnvironmentFile= takes no 'export'"


def test_systemd_analyze_verify():
    exe = shutil.which("systemd-analyze")
    if not exe:
        pytest.skip("systemd-analyze not installed")
    with tempfile.TemporaryDirectory() as d:
        paths = []
        for name in UNITS:
            target = name.replace("@.", "@w1.")  # verify needs an instance of a template
            shutil.copy(os.path.join(SYSTEMD, name), os.path.join(d, target))
            paths.append(os.path.join(d, target))
        r = subprocess.run([exe, "verify", "--man=no"] + paths, capture_output=True, text=True,
                           timeout=120)
    problems = [
        line for line in (r.stdout + r.stderr).splitlines()
        if line.strip()
        # The binaries are not installed on the test machine.
        and not re.search(r"Command /usr/local/bin/sluice-\S+ is not executable", line)
    ]
    assert not problems, "\n".join(problems)

"""System tests of the control plane's security: TLS and mutual TLS between
sluicectl, the workers and the coordinator, bearer tokens with roles, and the
audit log of mutating calls. Certificates are made per test with openssl (a
throw-away CA), in the test's temporary directory."""

import json
import os
import subprocess

import pytest

from cluster_testlib import Cluster, setup_topics
from sluice_testlib import binary, wait_for, write_job

READ_TOKEN = "read-0123456789abcdef0123456789"
OPERATE_TOKEN = "operate-0123456789abcdef012345"
WORKER_TOKEN = "worker-0123456789abcdef0123456"


def openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"openssl {' '.join(args)}: {r.stderr}"


def make_ca(d, name):
    """A self-signed CA: (cert path, key path)."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "1",
            "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    return os.path.join(d, f"{name}.pem"), os.path.join(d, f"{name}.key")


def issue(d, ca, name, server):
    """A certificate for 127.0.0.1/localhost (server) or a client, signed by
    `ca`: (cert path, key path)."""
    ext = os.path.join(d, f"{name}.ext")
    with open(ext, "w") as f:
        if server:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
        else:
            f.write("extendedKeyUsage=clientAuth\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/O=sluice-test/CN={name}",
            cwd=d)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", ca[0], "-CAkey", ca[1],
            "-set_serial", str(abs(hash(name)) % 10**9), "-days", "1", "-out", f"{name}.pem",
            "-extfile", ext, cwd=d)
    return os.path.join(d, f"{name}.pem"), os.path.join(d, f"{name}.key")


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


class Pki:
    """The certificates and tokens of one test."""

    def __init__(self, workdir):
        d = os.path.join(workdir, "pki")
        os.makedirs(d)
        self.ca = make_ca(d, "ca")
        self.server = issue(d, self.ca, "coordinator", server=True)
        self.worker = issue(d, self.ca, "worker", server=False)
        self.ops = issue(d, self.ca, "ops", server=False)
        self.other_ca = make_ca(d, "other-ca")
        self.stranger = issue(d, self.other_ca, "stranger", server=False)
        self.tokens = write(os.path.join(d, "tokens"),
                            "# TOKEN ROLE NAME\n"
                            f"{READ_TOKEN} read dashboards\n"
                            f"{OPERATE_TOKEN} operate alice  # on call\n"
                            f"{WORKER_TOKEN} worker workers\n")
        self.token_files = {}
        for role, token in (("read", READ_TOKEN), ("operate", OPERATE_TOKEN),
                            ("worker", WORKER_TOKEN), ("wrong", "not-a-token-at-all-000000")):
            self.token_files[role] = write(os.path.join(d, f"{role}.token"), f"{token}\n")
        self.audit_log = os.path.join(workdir, "audit.jsonl")

    def coordinator_flags(self):
        return ("--tls-cert", self.server[0], "--tls-key", self.server[1],
                "--tls-ca", self.ca[0], "--token-file", self.tokens,
                "--audit-log", self.audit_log)

    def client_flags(self, cert, token_role=None, ca=None):
        flags = ["--tls-ca", ca or self.ca[0]]
        if cert is not None:
            flags += ["--tls-cert", cert[0], "--tls-key", cert[1]]
        if token_role is not None:
            flags += ["--token-file", self.token_files[token_role]]
        return tuple(flags)

    def audit(self):
        try:
            with open(self.audit_log) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []


@pytest.fixture
def secure_cluster(request, workdir, broker):
    """Coordinator with mutual TLS, tokens and an audit log; one worker with
    its certificate and worker token; sluicectl as alice (operate)."""
    pki = Pki(workdir)
    c = Cluster(workdir, broker, coordinator_security=pki.coordinator_flags(),
                worker_security=pki.client_flags(pki.worker, "worker"),
                ctl_security=pki.client_flags(pki.ops, "operate"))
    request.addfinalizer(c.stop)
    c.start(workers=1)
    c.pki = pki
    return c


def refused(cluster, args, security):
    code, out, err = cluster.ctl(*args, security=security, timeout=5)
    assert code == 1, (args, security, code, out, err)
    assert err.startswith("sluicectl: "), err
    return err


def test_tokens_roles_and_audit_over_mutual_tls(secure_cluster):
    c, pki = secure_cluster, secure_cluster.pki
    job_file, job = write_job(c.workdir)
    name = job["name"]
    setup_topics(c.broker, job, 2)

    # alice (operate) submits and updates over mutual TLS; the worker, with
    # its own certificate and token, runs the tasks.
    c.submit(job_file)
    c.wait_running(name, 2)
    update_file, _ = write_job(c.workdir, name=name, topic=job["topic"], checkpoint="2s")
    code, _, err = c.ctl("update", name, update_file)
    assert code == 0, err

    # A read token reads, and cannot cancel: permission denied, by name.
    as_reader = pki.client_flags(pki.ops, "read")
    code, out, err = c.ctl("jobs", security=as_reader)
    assert code == 0 and name in out, (code, out, err)
    err = refused(c, ["cancel", name], as_reader)
    assert "permission denied" in err and "operate" in err and "dashboards" in err, err
    assert "cannot reach" not in err, err
    assert c.job_state(name) == "RUNNING"

    # No token, an unknown token, a worker token: refused.
    err = refused(c, ["jobs"], pki.client_flags(pki.ops))
    assert "no token" in err and "cannot reach" not in err, err
    err = refused(c, ["jobs"], pki.client_flags(pki.ops, "wrong"))
    assert "unknown token" in err, err
    err = refused(c, ["cancel", name], pki.client_flags(pki.ops, "worker"))
    assert "permission denied" in err, err

    # The audit log: the submit, the update and the refused cancels, with
    # the caller, the client certificate's subject and the change.
    def audited():
        lines = pki.audit()
        return lines if len(lines) >= 4 else None
    lines = wait_for(audited, 10, "four audit lines")
    submit, update, cancel_read, cancel_worker = lines[:4]
    assert submit["method"] == "SubmitJob" and submit["job"] == name, submit
    assert submit["caller"] == "alice" and submit["result"] == "ok", submit
    assert "version 1" in submit["change"], submit
    assert "CN=ops" in submit["cert_subject"], submit
    assert submit["peer"].startswith("ipv4:127.0.0.1:"), submit
    assert submit["file"] == job_file, submit
    assert update["method"] == "UpdateJob" and update["job"] == name, update
    assert update["change"] == "version 1 -> 2" and update["result"] == "ok", update
    assert cancel_read["method"] == "CancelJob" and cancel_read["caller"] == "dashboards"
    assert cancel_read["result"].startswith("refused: permission denied"), cancel_read
    assert "change" not in cancel_read, cancel_read
    assert cancel_worker["caller"] == "workers", cancel_worker
    # Reads are not audited, and the refused no-token calls were reads.
    assert all(line["method"] != "ListJobs" for line in lines), lines
    assert all(isinstance(line["time_ms"], int) and line["time"].endswith("Z") for line in lines)

    # The operator cancels: ok, audited.
    code, _, err = c.ctl("cancel", name)
    assert code == 0, err
    cancel = wait_for(lambda: len(pki.audit()) >= 5 and pki.audit()[4], 10, "the cancel's line")
    assert cancel["method"] == "CancelJob" and cancel["result"] == "ok", cancel
    assert cancel["change"].startswith("RUNNING -> "), cancel


def test_mutual_tls_refuses_wrong_certificates(secure_cluster):
    c, pki = secure_cluster, secure_cluster.pki
    # The right certificate and token: served.
    code, out, err = c.ctl("--json", "workers")
    assert code == 0 and '"w1"' in out, (code, out, err)

    # A client certificate from another CA, no client certificate, a server
    # verified against the wrong CA, and plaintext: the handshake fails.
    for security in (pki.client_flags(pki.stranger, "operate"),
                     pki.client_flags(None, "operate"),
                     pki.client_flags(pki.ops, "operate", ca=pki.other_ca[0]),
                     ("--insecure", "--token-file", pki.token_files["operate"])):
        code, out, err = c.ctl("jobs", security=security, timeout=3)
        assert code == 1 and out == "", (security, code, out, err)
        assert "cannot reach the coordinator" in err, (security, err)

    # A worker whose certificate the coordinator's CA did not sign never
    # registers.
    from cluster_testlib import ClusterWorker
    stranger = ClusterWorker(c.workdir, c.coordinator.address, c.broker.bootstrap, "w-stranger",
                             security=pki.client_flags(pki.stranger, "worker"))
    stranger.start()
    try:
        def logged_failure():
            with open(stranger.log_path, errors="replace") as f:
                return "cannot reach the coordinator" in f.read()
        wait_for(logged_failure, 30, "the stranger worker to fail to reach the coordinator")
        workers = c.ctl_json("workers").get("workers", [])
        assert [w["worker_id"] for w in workers] == ["w1"], workers
    finally:
        stranger.terminate()


def run(*args, timeout=30):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


def test_security_flags_are_checked_at_startup(workdir):
    coordinator = binary("coordinator", "sluice-coordinator")
    data = ["--data-dir", os.path.join(workdir, "data")]

    # Neither TLS nor --insecure.
    r = run(coordinator, "--listen", "127.0.0.1:0", *data)
    assert r.returncode == 2 and "--tls-cert" in r.stderr and "Usage" in r.stderr, r.stderr
    # Plaintext on a non-loopback address.
    r = run(coordinator, "--listen", "0.0.0.0:0", "--insecure", *data)
    assert r.returncode == 2 and "--insecure-allow-remote" in r.stderr, r.stderr
    # A certificate that is missing.
    missing = os.path.join(workdir, "missing.pem")
    r = run(coordinator, "--listen", "127.0.0.1:0", "--tls-cert", missing, "--tls-key", missing,
            *data)
    assert r.returncode == 2 and missing in r.stderr, r.stderr
    # A token file with a bad role names its line.
    tokens = write(os.path.join(workdir, "tokens"), "0123456789abcdef0123 admin root\n")
    r = run(coordinator, "--listen", "127.0.0.1:0", "--insecure", "--token-file", tokens, *data)
    assert r.returncode == 2 and f"{tokens}:1: unknown role 'admin'" in r.stderr, r.stderr

    # sluicectl and the worker: TLS or --insecure, nothing implied.
    r = run(binary("cli", "sluicectl"), "jobs")
    assert r.returncode == 2 and "--tls-ca" in r.stderr and "--insecure" in r.stderr, r.stderr
    r = run(binary("cli", "sluicectl"), "--insecure", "--token-file", missing, "jobs")
    assert r.returncode == 2 and missing in r.stderr, r.stderr
    r = run(binary("worker", "sluice-worker"), "--coordinator", "127.0.0.1:1",
            "--data-dir", os.path.join(workdir, "w"),
            "--checkpoint-dir", os.path.join(workdir, "checkpoints"))
    assert r.returncode == 2 and "--tls-ca" in r.stderr, r.stderr

    # --help documents the flags.
    for exe in (coordinator, binary("cli", "sluicectl"), binary("worker", "sluice-worker")):
        out = run(exe, "--help").stdout
        for flag in ("--tls-cert", "--tls-key", "--tls-ca", "--insecure"):
            assert flag in out, (exe, flag)
    assert "--audit-log" in run(coordinator, "--help").stdout


def test_metrics_can_be_bound_to_loopback(workdir):
    """/metrics and /healthz are read-only and, with --metrics-address, served
    on loopback only."""
    import urllib.request
    from cluster_testlib import Coordinator, free_port
    port = free_port()
    c = Coordinator(workdir, "127.0.0.1:1",
                    extra=("--metrics-port", str(port), "--metrics-address", "127.0.0.1"))
    c.start()
    try:
        def scraped():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    return r.read().decode()
            except OSError:
                return None
        assert "sluice_worker_alive" in wait_for(scraped, 10, "/metrics on 127.0.0.1")
        with open(c.log_path) as f:
            assert f"metrics on 127.0.0.1:{port}" in f.read()
    finally:
        c.stop()

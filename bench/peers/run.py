#!/usr/bin/python3
"""Sluice beside Kafka Streams and Flink on one Apache Kafka broker.

Run through bench/peers/run.sh (which documents the settings). For each job
(fraud, sessions) it writes one input topic (1 partition) with the generator
of the peers' tools jar, then runs each contender alone over the whole topic
and reports events/s per core (the process's utime+stime from /proc/PID/stat
between the outputs of the start and end markers), wall-clock events/s,
resident memory (VmHWM) and the alerts or sessions it emitted, compared
record by record across contenders. Then, for the fraud job, each contender
alone on a live stream at PEERS_RATE events/s: alert latency from the
payment's produce time to the alert's arrival at a reader.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PEERS = os.path.join(ROOT, "bench", "peers")
TOOLS = os.path.join(PEERS, "tools", "target", "peers-tools.jar")
KS = os.path.join(PEERS, "kafka-streams", "target", "peers-kafka-streams.jar")
FLINK = os.path.join(PEERS, "flink", "target", "peers-flink.jar")
TICK = os.sysconf("SC_CLK_TCK")


def env(name, default):
    return type(default)(os.environ.get(name, default))


EVENTS = env("PEERS_EVENTS", 1000000)
USERS = env("PEERS_USERS", 100000)
STEP_MS = env("PEERS_STEP_MS", 10)
RATE = env("PEERS_RATE", 50000)
LAT_USERS = env("PEERS_LATENCY_USERS", 10000000)
LAT_SECONDS = env("PEERS_LATENCY_SECONDS", 30)
WARMUP_S = env("PEERS_LATENCY_WARMUP_SECONDS", 10)
# How long after the input ends a contender may take to emit its last alerts.
LAT_GRACE_S = env("PEERS_LATENCY_GRACE_SECONDS", 60)
CONTENDERS = os.environ.get("PEERS_CONTENDERS", "sluice,kstreams,flink").split(",")
JOBS = os.environ.get("PEERS_JOBS", "fraud,sessions").split(",")
LATENCY = os.environ.get("PEERS_LATENCY", "1") != "0"
THROUGHPUT = os.environ.get("PEERS_THROUGHPUT", "1") != "0"
TIMEOUT_S = env("PEERS_TIMEOUT_SECONDS", 900)
JAVA_OPTS = os.environ.get("PEERS_JAVA_OPTS", "").split()
NAMES = {"sluice": "Sluice", "kstreams": "Kafka Streams 4.4", "flink": "Flink 2.2"}


def log(*a):
    print(*a, flush=True)


def sluice_bin():
    d = os.environ.get("SLUICE_BIN")
    cands = [d] if d else [os.path.join(ROOT, "build-bench", "worker"), os.path.join(ROOT, "build", "worker")]
    for c in cands:
        if c and os.path.exists(os.path.join(c, "sluice-worker")):
            return os.path.join(c, "sluice-worker")
    sys.exit("run.py: no sluice-worker in %s (set SLUICE_BIN, or bench/build_release.sh sluice-worker)" % cands)


def kafka(*args):
    return subprocess.run(["bash", os.path.join(ROOT, "scripts", "kafka.sh")] + list(args),
                          check=True, capture_output=True, text=True).stdout


def create_topics(bootstrap, topics):
    """NAME:PARTITIONS..., replication 1, through the admin API."""
    from confluent_kafka.admin import AdminClient, NewTopic
    a = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    fs = a.create_topics([NewTopic(t.split(":")[0], int(t.split(":")[1]), 1) for t in topics])
    for f in fs.values():
        f.result(60)


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def vm_hwm_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return -1


class Sampler(threading.Thread):
    """(wall ms, CPU seconds) of a process every 10 ms."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.samples, self.stop, self.hwm = pid, [], False, -1

    def run(self):
        while not self.stop:
            try:
                c = cpu_ticks(self.pid) / TICK
                self.hwm = max(self.hwm, vm_hwm_mb(self.pid))
            except (OSError, ValueError):
                break
            self.samples.append((time.time() * 1000.0, c))
            time.sleep(0.01)

    def cpu_at(self, ms):
        s = self.samples
        for i in range(1, len(s)):
            if s[i][0] >= ms:
                (t0, c0), (t1, c1) = s[i - 1], s[i]
                return c0 + (c1 - c0) * (ms - t0) / max(t1 - t0, 1e-9)
        return s[-1][1]


class Watch:
    """The tools jar's output reader, its JSON lines collected."""

    def __init__(self, bootstrap, topic, kind, tuples=None, latency_from_us=None, deadline_s=None):
        cmd = ["java"] + JAVA_OPTS + ["-jar", TOOLS, "watch", "--brokers", bootstrap, "--topic", topic, "--kind", kind]
        if deadline_s:
            cmd += ["--deadline-s", str(deadline_s)]
        if tuples:
            cmd += ["--tuples", tuples]
        if latency_from_us is not None:
            cmd += ["--latency-from-us", str(latency_from_us)]
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.lines, self.markers, self.summary = [], {}, None
        self.ready = threading.Event()
        self.cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(60):
            sys.exit("run.py: the output reader did not start")

    def _read(self):
        for line in self.p.stdout:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            with self.cv:
                if e["event"] == "ready":
                    self.ready.set()
                elif e["event"] == "marker":
                    self.markers.setdefault(e["key"], e)  # the first output of a marker
                elif e["event"] == "summary":
                    self.summary = e
                self.cv.notify_all()

    def wait_for(self, pred, timeout):
        with self.cv:
            return self.cv.wait_for(pred, timeout)

    def close(self):
        if self.p.poll() is None:
            self.p.terminate()
        self.p.wait()


def stop(p, grace=30):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def sluice_job(job, topic, out, name, work):
    """examples/jobs/JOB.yaml with this run's topics, at_least_once, 10 s checkpoints."""
    with open(os.path.join(ROOT, "examples", "jobs", job + ".yaml")) as f:
        text = f.read()
    if job == "fraud":
        text = text.replace("name: fraud", "name: " + name).replace("topic: payments", "topic: " + topic)
        text = text.replace("output: fraud-alerts", "output: " + out)
        text = text.replace("late: payments-late", "late: " + out + "-late")
        text = text.replace("dead_letter: payments-dlq", "dead_letter: " + out + "-dlq")
        text = text.replace("delivery: exactly_once", "delivery: at_least_once")
        text = text.replace("checkpoint_interval: 1s", "checkpoint_interval: 10s")
    else:
        text = text.replace("name: sessions", "name: " + name).replace("topic: clicks", "topic: " + topic)
        text = text.replace("output: user-sessions", "output: %s\n  late: %s-late\n  dead_letter: %s-dlq" % (out, out, out))
        text += "checkpoint_interval: 10s\ndelivery: at_least_once\n"
    path = os.path.join(work, name + ".yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


def start_contender(c, job, bootstrap, topic, out, tag, work):
    d = os.path.join(work, tag)
    os.makedirs(d, exist_ok=True)
    logf = open(os.path.join(d, "log.txt"), "w")
    if c == "sluice":
        jobfile = sluice_job(job, topic, out, tag, work)
        cmd = [sluice_bin(), "--job", jobfile, "--brokers", bootstrap, "--threads", "1",
               "--data-dir", os.path.join(d, "data"), "--checkpoint-dir", os.path.join(d, "checkpoints")]
    elif c == "kstreams":
        cmd = ["java"] + JAVA_OPTS + ["-jar", KS, job, "--brokers", bootstrap, "--input", topic, "--output", out,
                                     "--app-id", tag, "--state-dir", os.path.join(d, "state")]
    else:
        cmd = ["java"] + JAVA_OPTS + ["-jar", FLINK, job, "--brokers", bootstrap, "--input", topic, "--output", out,
                                     "--checkpoint-dir", os.path.join(d, "checkpoints")]
    return subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, cwd=d), " ".join(cmd)


def gen(bootstrap, topic, kind, extra=(), users=USERS):
    cmd = ["java"] + JAVA_OPTS + ["-jar", TOOLS, "gen", "--brokers", bootstrap, "--topic", topic, "--kind", kind,
                                 "--users", str(users), "--step-ms", str(STEP_MS)] + list(extra)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def throughput(job, bootstrap, work, run_id):
    kind = "payments" if job == "fraud" else "clicks"
    topic = "peers-%s-%s" % (job, run_id)
    outs = {c: "%s-%s-out" % (topic, c) for c in CONTENDERS}
    topics = [topic + ":1"]
    for o in outs.values():
        topics += [o + ":1", o + "-late:1", o + "-dlq:1"]
    create_topics(bootstrap, topics)
    g = gen(bootstrap, topic, kind, ["--count", str(EVENTS)])
    records = EVENTS + (2 if job == "fraud" else 3)
    log("\n### %s: %d %s (%d users, event time %d ms apart on average), topic %s, 1 partition" %
        (job, EVENTS, kind, USERS, STEP_MS, topic))
    log("generated at %.0f records/s" % g["rate"])
    results = {}
    for c in CONTENDERS:
        tag = "%s-%s-%s" % (job, c, run_id)
        tuples = os.path.join(work, tag + ".tuples")
        w = Watch(bootstrap, outs[c], "alerts" if job == "fraud" else "sessions", tuples)
        launched = time.time()
        p, cmd = start_contender(c, job, bootstrap, topic, outs[c], tag, work)
        s = Sampler(p.pid)
        s.start()
        ok = w.wait_for(lambda: "m-end" in w.markers or p.poll() is not None, TIMEOUT_S)
        if not ok or "m-end" not in w.markers:
            log("%s: no output for the end marker (exit %s); see %s/%s/log.txt" % (c, p.poll(), work, tag))
            stop(p)
            w.close()
            continue
        w.wait_for(lambda: w.summary is not None, 60)
        hwm = max(s.hwm, vm_hwm_mb(p.pid) if p.poll() is None else -1)
        s.stop = True
        s.join()
        stop(p)
        w.close()
        t0, t1 = w.markers["m-start"]["create_ms"], w.markers["m-end"]["create_ms"]
        cpu = s.cpu_at(t1) - s.cpu_at(t0)
        wall = (t1 - t0) / 1000.0
        r = {"cmd": cmd, "wall_s": wall, "cpu_s": cpu, "per_core": records / cpu if cpu > 0 else 0,
             "per_s": records / wall if wall > 0 else 0, "hwm_mb": hwm, "counts": w.summary["counts"],
             "startup_s": t0 / 1000.0 - launched, "tuples": tuples}
        results[c] = r
        log("%-18s %8.0f events/s per core  %8.0f events/s  cpu %6.2f s  wall %6.2f s  VmHWM %6.0f MB  %s" %
            (NAMES[c], r["per_core"], r["per_s"], cpu, wall, hwm, json.dumps(r["counts"], sort_keys=True)))
    # Record by record against the first contender.
    sets = {}
    for c, r in results.items():
        with open(r["tuples"]) as f:
            sets[c] = set(f.read().splitlines())
    if len(sets) > 1:
        base = next(iter(sets))
        for c in sets:
            if c == base:
                continue
            a, b = sets[base], sets[c]
            log("%s vs %s: %d records in both, %d only in %s, %d only in %s" %
                (NAMES[base], NAMES[c], len(a & b), len(a - b), NAMES[base], len(b - a), NAMES[c]))
            for x in sorted(a - b)[:3]:
                log("  only %s: %s" % (base, x))
            for x in sorted(b - a)[:3]:
                log("  only %s: %s" % (c, x))
    return results


def hop_latency(bootstrap, run_id):
    """The same live input read by a plain consumer: the broker hop alone, no processing."""
    topic = "peers-lat-hop-%s" % run_id
    create_topics(bootstrap, [topic + ":1"])
    start_us = int(time.time() * 1e6)
    w = Watch(bootstrap, topic, "input", latency_from_us=start_us + WARMUP_S * 1000000,
              deadline_s=LAT_SECONDS + LAT_GRACE_S)
    g = gen(bootstrap, topic, "payments", ["--rate", str(RATE), "--duration-s", str(LAT_SECONDS), "--seed", "2"],
            users=LAT_USERS)
    w.wait_for(lambda: w.summary is not None, LAT_GRACE_S + 60)
    w.close()
    x = (w.summary or {}).get("latency", {}).get("input")
    if not x:
        log("input hop: no summary")
        return None
    log("%-18s input %.0f/s  payment produced -> read by a plain consumer of the input topic: "
        "p50 %.0f / p99 %.0f / max %.0f ms (n=%d)" % ("(broker hop only)", g["rate"], x["p50_ms"], x["p99_ms"], x["max_ms"], x["n"]))
    return {"latency": {"input": x}, "rate": g["rate"]}


def latency(bootstrap, work, run_id):
    log("\n### fraud alert latency: %d payments/s for %d s (the first %d s not measured), %d users, "
        "ts = wall clock, a fresh topic per contender" % (RATE, LAT_SECONDS, WARMUP_S, LAT_USERS))
    results = {}
    hop = hop_latency(bootstrap, run_id)
    if hop:
        results["hop"] = hop
    for c in CONTENDERS:
        tag = "lat-%s-%s" % (c, run_id)
        topic, out = "peers-" + tag, "peers-%s-out" % tag
        create_topics(bootstrap, [topic + ":1", out + ":1", out + "-late:1", out + "-dlq:1"])
        w0 = Watch(bootstrap, out, "alerts")
        p, cmd = start_contender(c, "fraud", bootstrap, topic, out, tag, work)
        # Up when it alerts on a marker payment.
        deadline = time.time() + 120
        while time.time() < deadline and "m-ready" not in w0.markers and p.poll() is None:
            subprocess.run(["java", "-jar", TOOLS, "gen", "--brokers", bootstrap, "--topic", topic,
                            "--only-marker", "m-ready"], check=True, capture_output=True)
            w0.wait_for(lambda: "m-ready" in w0.markers, 5)
        w0.close()
        if "m-ready" not in w0.markers:
            log("%s: did not start" % c)
            stop(p)
            continue
        start_us = int(time.time() * 1e6)
        w = Watch(bootstrap, out, "alerts", latency_from_us=start_us + WARMUP_S * 1000000,
                  deadline_s=LAT_SECONDS + LAT_GRACE_S)
        s = Sampler(p.pid)
        s.start()
        g = gen(bootstrap, topic, "payments", ["--rate", str(RATE), "--duration-s", str(LAT_SECONDS), "--seed", "2"],
                users=LAT_USERS)
        w.wait_for(lambda: w.summary is not None, LAT_GRACE_S + 60)
        s.stop = True
        s.join()
        stop(p)
        w.close()
        if w.summary is None:
            log("%s: no summary" % c)
            continue
        t0, t1 = start_us / 1000.0 + WARMUP_S * 1000, start_us / 1000.0 + LAT_SECONDS * 1000
        cores = (s.cpu_at(t1) - s.cpu_at(t0)) / max((t1 - t0) / 1000.0, 1e-9)
        lat = w.summary["latency"]
        complete = w.summary.get("complete", True)
        results[c] = {"latency": lat, "cores": cores, "rate": g["rate"], "counts": w.summary["counts"],
                      "complete": complete}

        def fmt(k):
            x = lat.get(k)
            return "n/a" if not x else "p50 %.0f / p99 %.0f / max %.0f ms (n=%d)" % (x["p50_ms"], x["p99_ms"], x["max_ms"], x["n"])

        log("%-18s input %.0f/s  CPU %.2f cores  large_amount (on arrival): %s;  rolling rules: %s%s" %
            (NAMES[c], g["rate"], cores, fmt("large_amount"), fmt("rolling"),
             "" if complete else "  -- DID NOT KEEP UP: no alert for the end marker %d s after the input "
             "ended; the figures cover only the alerts read until then" % LAT_GRACE_S))
    return results


def main():
    if not all(os.path.exists(j) for j in (TOOLS, KS, FLINK)) or os.environ.get("PEERS_BUILD") == "1":
        log("building the peers (mvn package) ...")
        subprocess.run(["mvn", "-q", "-B", "package", "-DskipTests"], cwd=PEERS, check=True)
    if "sluice" in CONTENDERS:
        log("sluice-worker: %s" % sluice_bin())
    work = os.environ.get("PEERS_WORK") or tempfile.mkdtemp(prefix="sluice-peers-")
    run_id = time.strftime("%H%M%S")
    own_kafka = "PEERS_BOOTSTRAP" not in os.environ
    if own_kafka:
        out = kafka("start", work + "/kafka")
        bootstrap = [l.split("=", 1)[1] for l in out.splitlines() if l.startswith("bootstrap=")][0]
    else:
        bootstrap = os.environ["PEERS_BOOTSTRAP"]
        os.makedirs(work + "/kafka", exist_ok=True)
        with open(work + "/kafka/bootstrap", "w") as f:
            f.write(bootstrap + "\n")
    log("broker: %s (work directory %s)" % (bootstrap, work))
    log("machine: %s, %d CPUs" % (subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True,
                                                  text=True).stdout.split(":", 1)[-1].strip(), os.cpu_count()))
    all_results = {}
    try:
        for job in JOBS if THROUGHPUT else []:
            all_results[job] = throughput(job, bootstrap, work, run_id)
        if LATENCY and "fraud" in JOBS:
            all_results["latency"] = latency(bootstrap, work, run_id)
    finally:
        if own_kafka:
            kafka("stop", work + "/kafka")
    with open(os.path.join(work, "results.json"), "w") as f:
        json.dump(all_results, f, indent=1)
    # The summary table.
    log("\n### Summary\n")
    log("| contender | fraud events/s per core | fraud events/s | fraud VmHWM | fraud alerts | sessions events/s per core | "
        "sessions events/s | sessions VmHWM | sessions | alert p50 / p99 at %d/s (large_amount; rolling) | CPU at %d/s |" % (RATE, RATE))
    log("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in CONTENDERS:
        row = [NAMES[c]]
        for job in ("fraud", "sessions"):
            r = all_results.get(job, {}).get(c)
            if r:
                row += ["%.0fK" % (r["per_core"] / 1e3), "%.0fK" % (r["per_s"] / 1e3), "%.0f MB" % r["hwm_mb"],
                        str(sum(r["counts"].values()))]
            else:
                row += ["–"] * 4
        l = all_results.get("latency", {}).get(c)
        if l:
            la, ro = l["latency"].get("large_amount"), l["latency"].get("rolling")
            row.append("%s; %s%s" % ("%.0f / %.0f ms" % (la["p50_ms"], la["p99_ms"]) if la else "–",
                                     "%.0f / %.0f ms" % (ro["p50_ms"], ro["p99_ms"]) if ro else "–",
                                     "" if l.get("complete", True) else " (did not keep up)"))
            row.append("%.2f" % l["cores"])
        else:
            row += ["–", "–"]
        log("| " + " | ".join(row) + " |")
    hop = all_results.get("latency", {}).get("hop")
    if hop:
        x = hop["latency"]["input"]
        log("| (broker hop only: a plain consumer of the input) | | | | | | | | | %.0f / %.0f ms | |" % (x["p50_ms"], x["p99_ms"]))
    log("\nresults: %s/results.json" % work)
    if not os.environ.get("PEERS_KEEP") and not os.environ.get("PEERS_WORK"):
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

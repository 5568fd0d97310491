"""Shows what the demo cluster emits, and sums it up.

  --follow          print alerts, sessions and page-view counts as they appear (until Ctrl-C)
  --wait-consumed N wait until the workers have consumed N records in all
  --summary         read the output topics and print a summary
  --check           with --summary and --expect: fail unless every injected
                    fraud pattern raised its alert
"""

import argparse
import json
import shlex
import subprocess
import sys
import time
import uuid

from confluent_kafka import Consumer, TopicPartition

OUTPUTS = {"fraud-alerts": "alert", "user-sessions": "session", "pageviews-per-minute": "pages"}
SIDES = ["payments-late", "payments-dlq", "sessions-late", "sessions-dlq"]


def consumer(brokers, topics, partitions=8):
    c = Consumer({"bootstrap.servers": brokers, "group.id": "demo-" + uuid.uuid4().hex,
                  "enable.auto.commit": False})
    c.assign([TopicPartition(t, p, -2) for t in topics for p in range(partitions)])
    return c


def describe(topic, record):
    r = json.loads(record)
    if topic == "fraud-alerts":
        ev = r.get("event", {})
        extra = " ".join(f"{k}={r[k]}" for k in ("n", "total") if k in r)
        return (f"ALERT   {r['rule']:<13} {r['key']:<7} amount={ev.get('amount')} "
                f"country={ev.get('country')} {extra}")
    if topic == "user-sessions":
        return (f"SESSION {r['key']:<7} {r['events']} events in {r['duration'] / 1000:.0f}s, "
                f"{r['pages']} pages, "
                f"{r['first_page']} -> {r['last_page']}, revenue {r['revenue']}")
    return (f"PAGES   {r['key']:<7} {r['views']} views of {r['pages']} pages in the "
            f"minute from {r['window_start']}")


def statuses(paths):
    tasks = []
    for p in paths:
        try:
            with open(p) as f:
                tasks += json.load(f)["tasks"]
        except (OSError, ValueError, KeyError):
            pass
    return tasks


def follow(args):
    c = consumer(args.brokers, list(OUTPUTS))
    try:
        while True:
            for m in c.consume(500, 0.5):
                if not m.error():
                    print(describe(m.topic(), m.value()), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        c.close()


def read_all(brokers, topics, quiet=2.0):
    c = consumer(brokers, topics)
    out = {t: [] for t in topics}
    last = time.monotonic()
    while time.monotonic() - last < quiet:
        for m in c.consume(1000, 0.3):
            if not m.error():
                out[m.topic()].append(m.value())
                last = time.monotonic()
    c.close()
    return out


def job_tasks(args, job):
    """The coordinator's last report of each task of `job`."""
    r = subprocess.run(shlex.split(args.sluicectl) + ["--json", "status", job],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return []
    return [t.get("report", {}) for t in json.loads(r.stdout).get("tasks", [])]


def summary(args):
    out = read_all(args.brokers, list(OUTPUTS) + SIDES)
    # Each payment is read by the fraud job, each click by sessions and pageviews.
    fraud, sessions = job_tasks(args, "fraud"), job_tasks(args, "sessions")
    payments = sum(int(t.get("consumed", 0)) for t in fraud)
    clicks = sum(int(t.get("consumed", 0)) for t in sessions)
    lag = sum(max(0, int(t.get("endOffset", t.get("end_offset", -1))) -
                  max(int(t.get("nextOffset", t.get("next_offset", 0))), 0))
              for t in fraud + sessions
              if int(t.get("endOffset", t.get("end_offset", -1))) >= 0)
    alerts = [json.loads(v) for v in out["fraud-alerts"]]
    by_rule = {}
    for a in alerts:
        by_rule[a["rule"]] = by_rule.get(a["rule"], 0) + 1
    print("summary:")
    print(f"  events in:      {payments} payments, {clicks} clicks")
    print(f"  alerts:         {len(alerts)} " +
          "(" + ", ".join(f"{k} {v}" for k, v in sorted(by_rule.items())) + ")")
    print(f"  sessions:       {len(out['user-sessions'])}")
    print(f"  page-view rows: {len(out['pageviews-per-minute'])}")
    print(f"  late:           {len(out['payments-late']) + len(out['sessions-late'])}")
    print(f"  dead-lettered:  {len(out['payments-dlq']) + len(out['sessions-dlq'])}")
    print(f"  lag:            {lag}")
    if not args.expect:
        return 0
    expected = []
    with open(args.expect) as f:
        expected = [json.loads(line) for line in f if line.strip()]
    seen = {(a["rule"], a["key"], a.get("event", {}).get("transaction_id")) for a in alerts}
    missing = [e for e in expected
               if not any((e["rule"], e["key"], t) in seen for t in e["transaction_ids"])]
    print(f"  injected fraud patterns alerted: {len(expected) - len(missing)} of {len(expected)}")
    for e in missing[:10]:
        print(f"    missing: {e}")
    if args.check and (missing or not expected):
        return 1
    return 0


def wait_consumed(args):
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if sum(t["consumed"] for t in statuses(args.status)) >= args.wait_consumed:
            return 0
        time.sleep(0.2)
    print("demo: timed out waiting for the workers to consume the events", file=sys.stderr)
    return 1


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--brokers", required=True)
    p.add_argument("--status", action="append", default=[], help="a worker's --status-file")
    p.add_argument("--sluicectl", default="",
                   help="the sluicectl command line with --coordinator, as one string")
    p.add_argument("--follow", action="store_true")
    p.add_argument("--summary", action="store_true")
    p.add_argument("--wait-consumed", type=int)
    p.add_argument("--expect")
    p.add_argument("--check", action="store_true")
    args = p.parse_args()
    if args.follow:
        follow(args)
        return 0
    if args.wait_consumed is not None:
        return wait_consumed(args)
    if args.summary:
        return summary(args)
    p.print_usage()
    return 2


if __name__ == "__main__":
    sys.exit(main())

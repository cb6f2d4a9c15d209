#!/usr/bin/env python3
"""Timing primitives and the report for bench/*.sh (standard library only).

  benchlib.py ready --socket PATH [--timeout S] [--running N] [--id-out FILE] -- CMD...
      Start the clock, run CMD (e.g. `docker run -d ...` or `docker start ID`), then poll
      PATH (a unix socket) with `GET /_ping` until it answers OK; with --running N also
      until the daemon lists N running containers. Prints `ready_s=... [running_s=...]`.
      CMD's stdout (a container id) goes to --id-out.
  benchlib.py mem PID
      Prints `rss_kb=... pss_kb=...` of PID (VmRSS from status, Pss from smaps_rollup).
  benchlib.py report RESULTS.tsv OUT.md [--title TEXT]
      Medians and ratios of the recorded samples as a markdown table (also printed).

RESULTS.tsv rows: bench<TAB>variant<TAB>metric<TAB>value
"""

import json
import os
import socket
import statistics
import subprocess
import sys
import time

POLL_S = 0.002


def http_get(path, sock_path, timeout=1.0):
    """GET path over the unix socket; returns (status, body) or None when nothing answers."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock_path)
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    except OSError:
        return None
    finally:
        s.close()
    data = b"".join(chunks)
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None
    return status, body


def running_count(sock_path):
    r = http_get("/containers/json", sock_path, timeout=5.0)
    if r is None or r[0] != 200:
        return -1
    try:
        return len(json.loads(r[1]))
    except ValueError:
        return -1


def cmd_ready(argv):
    sock_path, timeout, running, id_out = None, 120.0, None, None
    i = 0
    while i < len(argv) and argv[i] != "--":
        opt = argv[i]
        if opt in ("--socket", "--timeout", "--running", "--id-out") and i + 1 < len(argv):
            val = argv[i + 1]
            if opt == "--socket":
                sock_path = val
            elif opt == "--timeout":
                timeout = float(val)
            elif opt == "--running":
                running = int(val)
            else:
                id_out = val
            i += 2
        else:
            sys.exit(f"ready: unknown option {opt}")
    cmd = argv[i + 1:]
    if not sock_path or not cmd:
        sys.exit("ready: need --socket PATH -- CMD...")
    t0 = time.monotonic()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, check=False)
    if id_out:
        with open(id_out, "wb") as f:
            f.write(p.stdout)
    if p.returncode != 0:
        sys.exit(f"ready: {cmd[0]} exited {p.returncode}")
    deadline = t0 + timeout
    cid = p.stdout.decode().strip() if id_out else ""
    next_check = time.monotonic() + 1.0
    while True:
        r = http_get("/_ping", sock_path)
        if r is not None and r[0] == 200 and r[1].strip() == b"OK":
            break
        now = time.monotonic()
        if now > deadline:
            sys.exit(f"ready: {sock_path} did not answer /_ping within {timeout} s")
        if cid and now > next_check:
            # Give up early when the container died (rarely: a fork a second).
            st = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", cid],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False)
            if st.stdout.strip() == b"false":
                sys.exit(f"ready: container {cid[:12]} exited before {sock_path} answered")
            next_check = time.monotonic() + 1.0
        time.sleep(POLL_S)
    ready = time.monotonic() - t0
    out = f"ready_s={ready:.4f}"
    if running is not None:
        while running_count(sock_path) < running:
            if time.monotonic() > deadline:
                sys.exit(f"ready: fewer than {running} containers running after {timeout} s")
            time.sleep(0.02)
        out += f" running_s={time.monotonic() - t0:.4f}"
    print(out)


def cmd_mem(argv):
    pid = argv[0]
    rss = pss = None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    print(f"rss_kb={rss} pss_kb={pss if pss is not None else 'NA'}")


# ---------------------------------------------------------------- report

def load(path):
    data = {}
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 4:
                continue
            bench, variant, metric, value = parts
            try:
                v = float(value)
            except ValueError:
                continue
            data.setdefault((bench, variant, metric), []).append(v)
    return data


def fmt_num(v, unit):
    if v is None:
        return "–"
    if unit == "s":
        return f"{v:.2f} s"
    if unit == "ms":
        return f"{v:.1f} ms" if v < 100 else f"{v:.0f} ms"
    if unit == "kB":
        return f"{v:.0f} kB"
    if unit == "bytes":
        return f"{v / 1024:.0f} KiB"
    if unit == "bool":
        return f"{v:.0f}"
    return f"{v:g}"


class Report:
    def __init__(self, data):
        self.data = data
        self.lines = []

    def med(self, bench, variant, metric):
        xs = self.data.get((bench, variant, metric))
        return statistics.median(xs) if xs else None

    def best(self, bench, variant, metric):
        xs = self.data.get((bench, variant, metric))
        return min(xs) if xs else None

    def n(self, bench, variant, metric):
        return len(self.data.get((bench, variant, metric), []))

    def section(self, title, note=None):
        self.lines += ["", f"### {title}", ""]
        if note:
            self.lines += [note, ""]

    def table(self, header, rows):
        if not rows:
            self.lines.append("(not run)")
            return
        self.lines.append("| " + " | ".join(header) + " |")
        self.lines.append("|" + "|".join("---" for _ in header) + "|")
        for r in rows:
            self.lines.append("| " + " | ".join(r) + " |")

    def ratio_rows(self, bench, metric, unit, variants, peer, with_best=False):
        """One row per variant: median, n, ratio to peer's median, target check."""
        pv = self.med(bench, peer, metric)
        rows = []
        for name, label, tgt in variants:
            v = self.med(bench, name, metric)
            fails = self.n(bench, name, "fail")
            if v is None:
                if fails:
                    rows.append([label, f"FAILED ({fails} of {fails} runs)", "0", "–", ""]
                                + (["–", "–"] if with_best else []))
                continue
            if fails:
                label += f" ({fails} runs FAILED)"
            ratio = f"{v / pv:.2f}×" if pv else "–"
            check = ""
            if tgt is not None and pv:
                check = f"≤ {tgt:.2f}×: " + ("met" if v / pv <= tgt else "MISSED")
            row = [label, fmt_num(v, unit), str(self.n(bench, name, metric)), ratio, check]
            if with_best:
                b, pb = self.best(bench, name, metric), self.best(bench, peer, metric)
                row += [fmt_num(b, unit), f"{b / pb:.2f}×" if pb else "–"]
            rows.append(row)
        return rows


def cmd_report(argv):
    src, out = argv[0], argv[1]
    title = "ws-init benchmarks"
    if "--title" in argv:
        title = argv[argv.index("--title") + 1]
    data = load(src)
    R = Report(data)
    meta = {}
    for (bench, variant, metric), xs in data.items():
        if bench == "meta":
            meta[variant] = xs[-1]
    L = R.lines
    L += [f"## {title}", ""]
    L.append(
        "Generated by `bench/run-all.sh`; every ratio compares medians measured in the same run "
        "(absolute times on a shared machine are noise). n = samples."
    )
    if "load1" in meta:
        L.append(f"Load average at the start: {meta['load1']:.1f} on {meta.get('cpus', 0):.0f} CPUs.")

    # 1. startup
    R.section(
        "1. Startup to ready (`docker run -d` until the inner dockerd answers `/_ping` on its unix socket)",
        "Ratio column: against the physical limit (the same image with `dockerd` as entrypoint). "
        "“upstream (reimpl.)” is bench/peers/dockerd-entrypoint.sh, our reimplementation of "
        "docker-library's dockerd-entrypoint.sh behaviour (RSA-4096 via openssl, dockerd under tini), "
        "not upstream code.",
    )
    rows = R.ratio_rows("startup", "ready", "s", [
        ("limit", "limit: `dockerd` as entrypoint", None),
        ("tini", "`tini-static -- dockerd`", None),
        ("ws-init", "**ws-init** (no TLS)", 1.10),
        ("ws-init-tls-fresh", "**ws-init** TLS, fresh certs", 1.15),
        ("ws-init-tls-kept", "**ws-init** TLS, kept keys", None),
        ("upstream-tls-fresh", "upstream (reimpl.) TLS, fresh certs", None),
        ("upstream-tls-kept", "upstream (reimpl.) TLS, kept keys", None),
        ("upstream-tcp", "upstream (reimpl.) no TLS (tcp :2375)", None),
    ], "limit", with_best=True)
    R.table(["variant", "median", "n", "× limit", "target (on medians)", "best", "best × limit"], rows)
    L += ["", "Noise on a loaded machine only adds time, so “best of n” is the steadier estimate of "
          "the intrinsic cost; the target column judges medians."]
    ups = []
    for up, ours, label in [
        ("upstream-tls-fresh", "ws-init-tls-fresh", "TLS, fresh certs"),
        ("upstream-tls-kept", "ws-init-tls-kept", "TLS, kept keys"),
        ("upstream-tcp", "ws-init", "no TLS (upstream: tcp :2375; ws-init: unix socket only)"),
    ]:
        a, b = R.med("startup", up, "ready"), R.med("startup", ours, "ready")
        if a and b:
            ups.append([label, fmt_num(b, "s"), fmt_num(a, "s"), f"**{a / b:.1f}×** faster"])
    if ups:
        L.append("")
        R.table(["ws-init vs upstream (reimpl.)", "ws-init", "upstream", "speed-up"], ups)

    # 2. certificates
    R.section(
        "2. Certificate generation alone (CA + server + client)",
        "ws-init: `examples/gen_certs.rs` calling `ws_init::tls::ensure_certificates` (ECDSA P-256). "
        "openssl: bench/peers/tls-openssl.sh, upstream's way (RSA 4096 for CA, server and client, then signing).",
    )
    rows = []
    for mode, label in [("fresh", "fresh keys"), ("kept", "kept keys, certificates re-issued")]:
        a, b = R.med("certs", f"ws-init-{mode}", "ms"), R.med("certs", f"openssl-{mode}", "ms")
        if a is not None and b is not None:
            rows.append([label, fmt_num(a, "ms"), fmt_num(b, "ms"),
                         f"**{b / a:.0f}×** faster" if a else "–"])
    inlog = R.med("certs", "ws-init-in-container", "ms")
    R.table(["", "ws-init", "openssl RSA-4096", "speed-up"], rows)
    if inlog is not None:
        L += ["", f"In a real start (the `TLS certificates ready … elapsed_ms=` log line, fresh certs): "
              f"median {fmt_num(inlog, 'ms')}."]

    # 3. shutdown
    R.section(
        "3. Shutdown (`docker stop` of a workspace with an inner container that traps SIGTERM)",
        "Time until the workspace has exited; “TERM” = runs in which the inner container received "
        "SIGTERM (it writes a marker into a bind-mounted directory).",
    )
    rows = []
    pv = R.med("shutdown", "limit", "stop")
    for name, label in [("limit", "limit: `dockerd` as entrypoint"), ("ws-init", "**ws-init**")]:
        v = R.med("shutdown", name, "stop")
        if v is None:
            continue
        terms = data.get(("shutdown", name, "term"), [])
        codes = data.get(("shutdown", name, "exit"), [])
        rows.append([label, fmt_num(v, "s"), str(len(terms)), f"{v / pv:.2f}×" if pv else "–",
                     f"{sum(terms):.0f}/{len(terms)}",
                     ",".join(f"{c:.0f}" for c in sorted(set(codes)))])
    R.table(["variant", "median", "n", "× limit", "TERM", "exit codes"], rows)

    # 4. footprint
    R.section(
        "4. Footprint of PID 1 while supervising dockerd",
        "VmRSS and PSS of the container's PID 1 read from the host (`/proc/PID/status`, "
        "`/proc/PID/smaps_rollup`) once the inner dockerd answers.",
    )
    rows = []
    for name, label in [("ws-init", "**ws-init** (static, musl)"), ("tini", "tini-static (Debian)")]:
        size = R.med("footprint", name, "size")
        rss = R.med("footprint", name, "rss")
        pss = R.med("footprint", name, "pss")
        if size is None and rss is None:
            continue
        rows.append([label, fmt_num(size, "bytes"), fmt_num(rss, "kB"), fmt_num(pss, "kB"),
                     str(R.n("footprint", name, "rss"))])
    R.table(["PID 1", "binary", "RSS", "PSS", "n"], rows)
    ratios = []
    for metric, label in [("size", "binary"), ("rss", "RSS"), ("pss", "PSS")]:
        a, b = R.med("footprint", "ws-init", metric), R.med("footprint", "tini", metric)
        if a and b:
            ratios.append(f"{label} {a / b:.2f}× ({'met' if a <= b else 'MISSED'})")
    if ratios:
        L += ["", "ws-init / tini-static, target ≤ 1×: " + "; ".join(ratios) + "."]

    # 5. reaping
    R.section(
        "5. Reaping 10,000 orphaned zombies as PID 1",
        "`unshare --pid --fork --mount-proc INIT -- orphans`: `examples/orphans.rs` makes 10,000 "
        "grandchildren that are re-parented to PID 1 and exit in one burst; “reap” is from the burst "
        "until /proc lists none of them, “total” is the whole run (spawning included).",
    )
    rows = []
    base = R.med("reap", "ws-init", "reap")
    for name in ["ws-init", "tini", "dumb-init", "catatonit"]:
        v = R.med("reap", name, "reap")
        if v is None:
            continue
        t = R.med("reap", name, "total")
        label = f"**{name}**" if name == "ws-init" else name
        rows.append([label, fmt_num(v, "ms"), fmt_num(t, "s"), str(R.n("reap", name, "reap")),
                     f"{base / v:.2f}×" if base else "–"])
    R.table(["PID 1", "reap", "total", "n", "ws-init reap time ÷ this"], rows)

    # 6. scaling
    R.section(
        "6. Restart with N inner containers (`--restart always`)",
        "`docker stop` then `docker start` of the workspace (what `docker restart` does); times from "
        "`docker start` until `/_ping` answers and until all N containers run again; RSS of PID 1 then.",
    )
    rows = []
    ns = sorted({int(v.split("-n")[-1]) for (b, v, m) in data if b == "scaling" and "-n" in v})
    for n in ns:
        for name, label in [("limit", "limit"), ("ws-init", "**ws-init**")]:
            key = f"{name}-n{n}"
            ready = R.med("scaling", key, "ready")
            if ready is None:
                continue
            running = R.med("scaling", key, "running")
            stop = R.med("scaling", key, "stop")
            rss = R.med("scaling", key, "rss")
            lim_ready = R.med("scaling", f"limit-n{n}", "ready")
            lim_run = R.med("scaling", f"limit-n{n}", "running")
            rows.append([
                str(n), label, fmt_num(stop, "s"), fmt_num(ready, "s"),
                f"{ready / lim_ready:.2f}×" if lim_ready else "–",
                fmt_num(running, "s"),
                f"{running / lim_run:.2f}×" if lim_run and running else "–",
                fmt_num(rss, "kB") if name == "ws-init" else "–",
            ])
    R.table(["N", "PID 1", "stop", "start→ping", "× limit", "start→all N running", "× limit",
             "ws-init RSS"], rows)

    text = "\n".join(L) + "\n"
    with open(out, "w") as f:
        f.write(text)
    sys.stdout.write(text)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd, argv = sys.argv[1], sys.argv[2:]
    if cmd == "ready":
        cmd_ready(argv)
    elif cmd == "mem":
        cmd_mem(argv)
    elif cmd == "report":
        cmd_report(argv)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()

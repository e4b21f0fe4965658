#!/usr/bin/env python3
"""One comparison table (Markdown) from a bench/run.sh result dir.

usage: summarize.py OUT_DIR
Reads OUT/{ours,kam}-{reg,call}/{results.tsv,summary.txt} (written by ../shared/bench/run.sh)
and OUT/{ours,kam}-mem/mem.tsv (bench/mem.sh, ../shared/bench/mem.sh).
"""
import csv, os, re, sys

OUT = sys.argv[1]
LADDER = re.compile(r"(reg|call) ladder: max PASS \(0 failed\) = (\d+)/s, max CLEAN \(also 0 retrans\) = (\d+)/s, lowest FAIL = (\d+)/s")


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def rows(target, part):
    txt = read(os.path.join(OUT, f"{target}-{part}", "results.tsv"))
    if not txt:
        return []
    return list(csv.DictReader(txt.splitlines(), delimiter="\t"))


def ladder(target, part):
    txt = read(os.path.join(OUT, f"{target}-{part}", "summary.txt")) or ""
    m = LADDER.search(txt)
    return (int(m.group(2)), int(m.group(3)), int(m.group(4))) if m else None


def latency(target, part):
    """{'reply REGISTER->200': (count, p50, p90, p99, max), ...} from the pcap block."""
    txt = read(os.path.join(OUT, f"{target}-{part}", "summary.txt")) or ""
    out = {}
    for line in txt.splitlines():
        m = re.match(r"^(reply|relay)\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$", line)
        if m:
            out[f"{m.group(1)} {m.group(2)}"] = tuple(int(x) for x in m.groups()[2:])
    return out


def mem(target):
    txt = read(os.path.join(OUT, f"{target}-mem", "mem.tsv"))
    if not txt:
        return {}
    return {r["contacts"]: r for r in csv.DictReader(txt.splitlines(), delimiter="\t")}


def step_row(target, part, rate):
    for r in rows(target, part):
        if r["phase"] in (f"{part}-{rate}", f"{part}-{rate}-retry") and r["verdict"] == "PASS":
            return r
    return None


def fixed_row(target, part):
    for r in rows(target, part):
        if r["phase"].startswith("fixed-"):
            return r
    return None


def fmt_ladder(target, part):
    l = ladder(target, part)
    if l is None:
        return "–"
    p, c, f = l
    r = step_row(target, part, p)
    cpu = f", server CPU {r['srv_cpu%']}%" if r else ""
    lat = f", SIPp RTD1 p50/p99 {r['p50_ms']}/{r['p99_ms']} ms" if r else ""
    return f"**{p:,}** (clean {c:,}; first fail {f:,}{cpu}{lat})" if f else f"**≥{p:,}** (no failing step; clean {c:,}{cpu}{lat})"


def fmt_lat(target, part, key):
    v = latency(target, part).get(key)
    return f"{v[1]} / {v[3]}" if v else "–"


def fmt_fixed(target, part):
    r = fixed_row(target, part)
    if r is None:
        return "–"
    return f"{r['verdict']}: {r['ok']}/{r['created']} ok, {r['failed']} failed, {r['retrans']} retrans, server CPU {r['srv_cpu%']}%"


def fmt_mem(target, n, key="rss_sum_MiB"):
    r = mem(target).get(n)
    return f"{r[key]} MiB" if r else "–"


def bar(ok):
    return "–" if ok is None else ("PASS" if ok else "**FAIL**")


def main():
    T = ["ours", "kam"]
    lo = ladder("ours", "reg"); co = ladder("ours", "call")
    inv200 = latency("ours", "call").get("reply INVITE->200")
    relay = latency("ours", "call").get("relay INVITE")
    rss100 = mem("ours").get("100000")
    fixed_call = fixed_row("ours", "call")
    print("| metric | CareFlow (this run) | Kamailio `-n 2` (this run) | bar for CareFlow | verdict |")
    print("|---|---|---|---|---|")
    print(f"| authenticated REGISTER/s, max PASS (0 failures) | {fmt_ladder('ours','reg')} | {fmt_ladder('kam','reg')} | ≥ 8,000 | {bar(None if lo is None else lo[0] >= 8000)} |")
    print(f"| calls/s, max PASS (0 failed calls) | {fmt_ladder('ours','call')} | {fmt_ladder('kam','call')} | ≥ 1,500 | {bar(None if co is None else co[0] >= 1500)} |")
    fr = fixed_row("ours", "reg"); fk = fixed_row("kam", "reg")
    print(f"| REGISTER at {fr['target/s'] if fr else '?'}/s fixed run | {fmt_fixed('ours','reg')} | {fmt_fixed('kam','reg')} | | |")
    for key, label in (("reply REGISTER->401", "REGISTER → 401 (server time)"), ("reply REGISTER->200", "auth REGISTER → 200 (digest + save)")):
        print(f"| {label}, pcap µs p50 / p99 | {fmt_lat('ours','reg',key)} | {fmt_lat('kam','reg',key)} | | |")
    fc = fixed_row("ours", "call")
    print(f"| calls at {fc['target/s'] if fc else '?'}/s fixed run | {fmt_fixed('ours','call')} | {fmt_fixed('kam','call')} | 0 failures | {bar(None if fixed_call is None else fixed_call['verdict'] == 'PASS')} |")
    for key, label in (("reply INVITE->407", "INVITE → 407 (server time)"),
                       ("relay INVITE", "auth INVITE relayed (in → out)"),
                       ("relay 180/INVITE", "180 relayed (in → out)"),
                       ("relay 200/INVITE", "200 to INVITE relayed (in → out)"),
                       ("reply INVITE->200", "auth INVITE in → 200 out (incl. SIPp UAS 180→200 gap)"),
                       ("relay BYE", "BYE relayed (in → out)")):
        b, v = "", ""
        if key == "reply INVITE->200":
            b, v = "p99 < 5,000 µs", bar(None if inv200 is None else inv200[3] < 5000)
        if key == "relay INVITE":
            b, v = "(hop only) p99 < 5,000 µs", bar(None if relay is None else relay[3] < 5000)
        print(f"| {label}, pcap µs p50 / p99 | {fmt_lat('ours','call',key)} | {fmt_lat('kam','call',key)} | {b} | {v} |")
    print(f"| RSS idle | {fmt_mem('ours','0')} | {fmt_mem('kam','0')} (PSS {fmt_mem('kam','0','pss_sum_MiB')}) | | |")
    print(f"| RSS, 10,000 contacts | {fmt_mem('ours','10000')} | {fmt_mem('kam','10000')} (PSS {fmt_mem('kam','10000','pss_sum_MiB')}) | | |")
    print(f"| RSS, 100,000 contacts | {fmt_mem('ours','100000')} | {fmt_mem('kam','100000')} (PSS {fmt_mem('kam','100000','pss_sum_MiB')}) | < 300 MB (286.1 MiB) | {bar(None if rss100 is None else float(rss100['rss_sum_MiB']) * 1.048576 < 300)} |")
    settled = [k for k in mem("ours") if "+" in k]
    for k in settled:
        print(f"| RSS, {k.replace('+', ' contacts, then ')} idle (finished transactions expired) | {fmt_mem('ours', k)} | – | < 300 MB | {bar(float(mem('ours')[k]['rss_sum_MiB']) * 1.048576 < 300)} |")
    reg_note = read(os.path.join(OUT, "ours-mem", "reg.txt"))
    if reg_note:
        print()
        print("CareFlow memory-phase registrations: " + "; ".join(l.strip() for l in reg_note.splitlines()))
    print()
    steal = read(os.path.join(OUT, "steal.tsv"))
    if steal:
        print("Host steal time per phase (VM; /proc/stat steal share of all CPU time, not in other_cpu%): "
              + ", ".join(f"{l.split(chr(9))[0]} {l.split(chr(9))[1]}%" for l in steal.splitlines() if chr(9) in l))
        print()
    print("Kamailio memory is summed over its 7 processes (RSS counts the shared memory once per process; PSS is the fair figure). CareFlow is one process (RSS ≈ PSS).")
    for t, name in (("ours", "CareFlow"), ("kam", "Kamailio -n 2")):
        for part in ("reg", "call"):
            rs = rows(t, part)
            if not rs:
                continue
            print()
            print(f"#### {name}, {part} steps (cpu%: 100 = one core; other = rest of the box)")
            print()
            cols = ["phase", "target/s", "achieved/s", "created", "ok", "failed", "retrans", "p50_ms", "p99_ms", "srv_cpu%", "uac_cpu%", "uas_cpu%", "other_cpu%", "verdict", "clean"]
            print("| " + " | ".join(cols) + " |")
            print("|" + "---|" * len(cols))
            for r in rs:
                print("| " + " | ".join(r.get(c, "") for c in cols) + " |")


main()

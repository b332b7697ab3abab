"""The feedback server under load: the real `rlhfkit feedback serve` process on 127.0.0.1, many
annotators labelling at once over HTTP (one thread each), random double submits, and optionally
the server killed with SIGKILL half way and started again while the clients retry.

    .venv/bin/python benchmarks/feedback_load.py [--annotators 50] [--labels 20] [--overlap 2] [--kill]

Prints the label latency (one POST /api/items/ID/labels, sent to a running server, measured by the
client: p50 / p95 / max) and checks that `rlhfkit feedback export` holds exactly the labels the
server acknowledged. tests/test_feedback_load.py runs the same thing with --kill.

Only loopback traffic; every loop is bounded by a deadline.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from rlhfkit.feedback.store import FeedbackStore

CHOICES = (0, 1, "tie")  # "both bad" is left out of a pairwise export, so it is not used here


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rlhfkit(*args: str, **kwargs) -> list[str]:
    """The command line of the real CLI, run with this interpreter (and its PYTHONPATH)."""
    return [sys.executable, "-m", "rlhfkit", *args]


class Server:
    """`rlhfkit feedback serve --access-log` as a child process; its stdout and stderr are appended
    to files in `folder` (kept across restarts, so a test can read every line it ever wrote)."""

    def __init__(self, db: Path, port: int, folder: Path, overlap: int):
        self.db, self.port, self.overlap = db, port, overlap
        self.stdout, self.stderr = folder / "server.stdout", folder / "server.stderr"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout: float = 60.0) -> None:
        with open(self.stdout, "ab") as out, open(self.stderr, "ab") as err:
            self.proc = subprocess.Popen(
                rlhfkit("feedback", "serve", "--db", str(self.db), "--port", str(self.port),
                        "--overlap", str(self.overlap), "--access-log"),
                stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}: {self.logs()[-2000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/api/health")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"the server did not answer within {timeout:.0f}s")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in (self.stdout, self.stderr) if p.exists())


class Client:
    """One keep-alive HTTP connection for one annotator. `call` retries connection errors and 5xx
    answers (the server being killed and restarted) until `deadline`; it returns (status, body)."""

    def __init__(self, port: int, token: str, deadline: float):
        self.port, self.token, self.deadline = port, token, deadline
        self.conn: http.client.HTTPConnection | None = None
        self.retries = 0

    def once(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Authorization": f"Bearer {self.token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            self.conn.request(method, path, body=data, headers=headers)
            reply = self.conn.getresponse()
            return reply.status, json.loads(reply.read() or b"null")
        except (OSError, http.client.HTTPException, json.JSONDecodeError):
            self.conn.close()
            self.conn = None
            raise

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        while True:
            try:
                status, reply = self.once(method, path, body)
                if status < 500:
                    return status, reply
            except (OSError, http.client.HTTPException, json.JSONDecodeError):
                pass
            if time.monotonic() > self.deadline:
                raise TimeoutError(f"no answer to {method} {path} before the deadline")
            self.retries += 1
            time.sleep(0.05 + 0.05 * random.random())


@dataclass
class LoadResult:
    acked: dict[tuple[int, str], dict] = field(default_factory=dict)  # (item id, annotator) -> label id, value
    latencies: list[float] = field(default_factory=list)  # seconds per POST that got its answer first time
    double_submits: int = 0
    mismatched_duplicates: list[str] = field(default_factory=list)
    retries: int = 0
    errors: list[str] = field(default_factory=list)
    acked_at_kill: int | None = None
    starts: int = 0
    seconds: float = 0.0
    exported: list[dict] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)
    logs: str = ""
    db: Path | None = None

    def percentile(self, q: float) -> float:
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")

    def summary(self) -> str:
        ms = 1000.0
        return (f"{len(self.acked)} labels acknowledged, {len(self.exported)} exported; label latency "
                f"p50 {self.percentile(0.5) * ms:.1f} ms, p95 {self.percentile(0.95) * ms:.1f} ms, "
                f"max {max(self.latencies, default=0) * ms:.1f} ms over {len(self.latencies)} requests; "
                f"{self.double_submits} double submits, {self.retries} retries, {self.starts} server starts, "
                f"{self.seconds:.1f}s in all")


def _annotate(name: str, client: Client, n_labels: int, rng: random.Random, result: LoadResult,
              lock: threading.Lock, port: int) -> None:
    """Label up to `n_labels` items (fewer if the queue runs dry), double-submitting some."""
    done = 0
    while done < n_labels:
        status, reply = client.call("GET", "/api/next")
        if status != 200:
            raise RuntimeError(f"{name}: GET /api/next answered {status}: {reply}")
        if reply["item"] is None:
            return
        item = reply["item"]
        shown = [r["index"] for r in item["responses"]]
        choice = rng.choice(CHOICES)
        value = {"preferred": shown[choice] if isinstance(choice, int) else choice}
        body = {"submission_id": uuid.uuid4().hex, "value": value, "seconds": rng.random() * 5}
        path = f"/api/items/{item['id']}/labels"
        twin: list = []
        double = rng.random() < 0.2
        if double:  # the same answer sent again at once, on a second connection (a double click)
            other = Client(port, client.token, client.deadline)
            thread = threading.Thread(target=lambda: twin.append(other.call("POST", path, body)))
            thread.start()
        start = time.perf_counter()
        try:
            first = client.once("POST", path, body)
        except (OSError, http.client.HTTPException, json.JSONDecodeError):
            first = None
        if first is not None and first[0] == 200:
            latency = time.perf_counter() - start
        else:  # the server was down: retry with the same submission_id until it answers
            latency = None
            first = client.call("POST", path, body)
        if first[0] != 200:
            raise RuntimeError(f"{name}: POST {path} answered {first[0]}: {first[1]}")
        label_id = first[1]["label_id"]
        if double:
            thread.join()
            if not twin or twin[0][0] != 200 or twin[0][1]["label_id"] != label_id:
                result.mismatched_duplicates.append(f"{name} item {item['id']}: {first} vs {twin}")
        with lock:
            result.acked[(item["id"], name)] = {"label_id": label_id, "value": value}
            if latency is not None:
                result.latencies.append(latency)
            result.double_submits += double
        done += 1


def _prepare(folder: Path, annotators: int, labels_each: int, overlap: int) -> tuple[Path, dict[str, str], str]:
    """Items through the real `feedback import`; annotators (50 CLI starts would take a minute on
    a small machine) added with the store directly. Returns the database, tokens and admin token."""
    n_items = -(-annotators * labels_each // overlap)
    rows = folder / "items.jsonl"
    with open(rows, "w") as f:
        for i in range(n_items):
            f.write(json.dumps({"prompt": f"Prompt {i}: which reply is kinder?",
                                "responses": [f"Reply A to {i}: thank you!", f"Reply B to {i}: whatever."]}) + "\n")
    db = folder / "fb.sqlite"
    subprocess.run(rlhfkit("feedback", "import", str(rows), "--db", str(db)), check=True, capture_output=True)
    store = FeedbackStore(db)
    tokens = {f"annotator{i:02d}": store.add_annotator(f"annotator{i:02d}") for i in range(annotators)}
    admin = store.add_annotator("lead", admin=True)
    store.close()
    return db, tokens, admin


def run_load(folder: Path, annotators: int = 50, labels_each: int = 20, overlap: int = 2, kill: bool = True,
             seed: int = 0, timeout: float = 240.0) -> LoadResult:
    """Run the whole load (see the module docstring) in `folder`; the server is stopped at the end
    and the labels exported with `rlhfkit feedback export`."""
    folder = Path(folder)
    db, tokens, admin = _prepare(folder, annotators, labels_each, overlap)
    port = free_port()
    server = Server(db, port, folder, overlap)
    result = LoadResult(tokens=dict(tokens, lead=admin), db=db)
    lock = threading.Lock()
    begin = time.monotonic()
    deadline = begin + timeout
    server.start()
    clients = {name: Client(port, token, deadline) for name, token in tokens.items()}

    def work(name: str, i: int) -> None:
        try:
            _annotate(name, clients[name], labels_each, random.Random(seed * 1000 + i), result, lock, port)
        except Exception as err:  # noqa: BLE001 - reported to the caller, which fails on any
            with lock:
                result.errors.append(f"{name}: {type(err).__name__}: {err}")

    threads = [threading.Thread(target=work, args=(name, i), daemon=True) for i, name in enumerate(tokens)]
    try:
        for t in threads:
            t.start()
        if kill:  # SIGKILL once about 40% of the labels are in, then start it again on the same port
            while len(result.acked) < 0.4 * annotators * labels_each and time.monotonic() < deadline:
                if not any(t.is_alive() for t in threads):
                    break
                time.sleep(0.01)
            server.kill()
            result.acked_at_kill = len(result.acked)
            time.sleep(0.5)
            server.start()
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in threads):
            result.errors.append(f"annotators still running after {timeout:.0f}s")
    finally:
        server.stop()
    result.seconds = time.monotonic() - begin
    result.retries = sum(c.retries for c in clients.values())
    result.starts = server.starts
    result.logs = server.logs()
    out = folder / "export.jsonl"
    subprocess.run(rlhfkit("feedback", "export", "--db", str(db), "--kind", "pairwise", "--output", str(out)),
                   check=True, capture_output=True)
    result.exported = [json.loads(line) for line in out.read_text().splitlines()]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--labels", type=int, default=20, help="labels per annotator")
    parser.add_argument("--overlap", type=int, default=2)
    parser.add_argument("--kill", action="store_true", help="SIGKILL the server half way and restart it")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as folder:
        result = run_load(Path(folder), args.annotators, args.labels, args.overlap, args.kill, args.seed)
    print(result.summary())
    if result.errors:
        print("errors:", *result.errors[:10], sep="\n  ")
    keys = sorted((r["item_id"], r["annotator"]) for r in result.exported)
    same = keys == sorted(result.acked)
    print(f"export holds exactly the acknowledged labels: {same}; median label latency "
          f"{statistics.median(result.latencies) * 1000:.1f} ms")
    sys.exit(0 if same and not result.errors else 1)


if __name__ == "__main__":
    main()

import json, os, subprocess, sys, time, http.client, socket, datetime
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
db = "/tmp/hyg/views.db"
for f in [db, db+"-wal", db+"-shm"]:
    if os.path.exists(f): os.remove(f)
proc = subprocess.Popen([sys.argv[1], "serve", "--listen", f"127.0.0.1:{port}", "--upstream", "http://127.0.0.1:9", "--db", db],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, RUST_LOG="warn", OLLAMETER_TELEMETRY_ENABLED="false"))
def req(method, path, body=None, ctype="application/json"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request(method, path, body=body, headers={"Content-Type": ctype}); r = c.getresponse(); d = r.read(); c.close(); return r.status, d
for _ in range(200):
    try:
        req("GET", "/api/model-performance/health"); break
    except Exception: time.sleep(0.05)
now = datetime.datetime.now(datetime.timezone.utc)
models = int(sys.argv[2]); per = 100
for m in range(models):
    lines = []
    for i in range(per):
        ts = (now - datetime.timedelta(minutes=i*10)).isoformat()
        lines.append(json.dumps({"id": f"v-{m}-{i}", "timestamp": ts, "model": f"model-{m:04d}:{1+m%9}b", "operation": "chat", "endpoint": "/api/chat",
            "stream": True, "success": i % 20 != 0, "processing_time_ms": 100.0 + (m % 50) * 7 + i % 13, "ttft_ms": 30.0 + i % 7,
            "tokens_per_second": 20.0 + m % 30, "output_tokens": 100, "request_bytes": 0, "response_bytes": 0, "tokens_estimated": False, "source": "import"}))
    st, d = req("POST", "/api/model-performance/import?format=ndjson", "\n".join(lines).encode(), "application/x-ndjson")
    assert st == 200, (st, d[:300])
for name, path in [("dashboard (default limit 50)", "/dashboard"), ("dashboard limit=1000", "/dashboard?limit=1000"),
                   ("statistics (default limit 50)", "/api/model-performance/statistics"), ("statistics limit=1000", "/api/model-performance/statistics?limit=1000")]:
    times = []; size = 0
    for _ in range(20):
        t = time.time(); st, d = req("GET", path); times.append((time.time()-t)*1000); size = len(d); assert st == 200, st
    times.sort()
    print(f"{name}, {models} models: median {times[10]:.1f} ms, p95 {times[18]:.1f} ms over 20 calls, {size/1024:.0f} KB", flush=True)
proc.terminate(); proc.wait()

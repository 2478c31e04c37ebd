import json, os, subprocess, sys, threading, time, http.client, socket
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
from concurrent.futures import ThreadPoolExecutor

class Fake(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def send(self, code, obj):
        b = json.dumps(obj).encode()
        self.send_response(code); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b))); self.end_headers(); self.wfile.write(b)
    def do_GET(self):
        if self.path == "/api/tags":
            self.send(200, {"models": [{"name": "llama3.2:latest", "model": "llama3.2:latest", "size": 2019393189, "digest": "a"*64,
                "details": {"family": "llama", "parameter_size": "3.2B", "quantization_level": "Q4_K_M"}}]})
        elif self.path == "/api/ps":
            self.send(200, {"models": []})
        else:
            self.send(200, {})
    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0)); body = json.loads(self.rfile.read(n) or b"{}")
        model = body.get("model", "")
        if model.split(":")[0] != "llama3.2":
            msg = f'model "{model}" not found, try pulling it first'
            if self.path.startswith("/v1/"):
                self.send(404, {"error": {"message": msg, "type": "api_error", "param": None, "code": None}})
            else:
                self.send(404, {"error": msg})
            return
        self.send(200, {"model": model, "response": "hi", "done": True, "done_reason": "stop", "total_duration": 1000000,
                        "load_duration": 1000, "prompt_eval_count": 3, "prompt_eval_duration": 10000, "eval_count": 2, "eval_duration": 20000})

fake = ThreadingHTTPServer(("127.0.0.1", 0), Fake); threading.Thread(target=fake.serve_forever, daemon=True).start()
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
db = "/tmp/hyg/flood.db"
for f in [db, db+"-wal", db+"-shm"]:
    if os.path.exists(f): os.remove(f)
proc = subprocess.Popen([sys.argv[1], "serve", "--listen", f"127.0.0.1:{port}", "--upstream", f"http://127.0.0.1:{fake.server_address[1]}", "--db", db],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, RUST_LOG="warn"))
def rss():
    for l in open(f"/proc/{proc.pid}/status"):
        if l.startswith("VmRSS:"): return int(l.split()[1]) / 1024
local = threading.local()
def conn():
    if not hasattr(local, "c"): local.c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    return local.c
def req(method, path, body=None):
    for attempt in range(3):
        try:
            c = conn(); c.request(method, path, body=json.dumps(body) if body is not None else None, headers={"Content-Type": "application/json"})
            r = c.getresponse(); data = r.read(); return r.status, data
        except Exception:
            local.c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    return 0, b""
for _ in range(200):
    try:
        if req("GET", "/api/model-performance/health")[0]: break
    except Exception: pass
    time.sleep(0.05)
for _ in range(50): req("POST", "/api/generate", {"model": "llama3.2", "prompt": "hi", "stream": False})
time.sleep(2)
print(f"RSS after 50 good calls: {rss():.1f} MiB", flush=True)
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
t0 = time.time()
def one(args):
    r, i = args
    m = f"junk-{r}-{i:05d}-{i*2654435761:x}"
    if i % 2: return req("POST", "/v1/chat/completions", {"model": m, "messages": [{"role": "user", "content": "hi"}]})[0]
    return req("POST", "/api/generate", {"model": m, "prompt": "hi"})[0]
with ThreadPoolExecutor(32) as ex:
    for r in range(rounds):
        st = list(ex.map(one, [(r, i) for i in range(10000)]))
        time.sleep(1)
        print(f"RSS after {(r+1)*10000} distinct unknown names: {rss():.1f} MiB (statuses {sorted(set(st))})", flush=True)
print(f"{rounds*10000} calls in {time.time()-t0:.1f} s", flush=True)
for p in ["/api/model-performance/statistics", "/api/model-performance/statistics?include_unknown=true&limit=10000", "/dashboard"]:
    t = time.time(); st, data = req("GET", p); print(f"{p}: {st} {len(data)/1024:.1f} KB in {(time.time()-t)*1000:.1f} ms", flush=True)
st, data = req("GET", "/metrics")
for l in data.decode().splitlines():
    if l.startswith("ollameter_models_evicted_total"): print(l)
st, data = req("GET", "/api/model-performance/insights")
for i in json.loads(data)["insights"]: print("insight:", i["message"][:140])
proc.terminate(); proc.wait()

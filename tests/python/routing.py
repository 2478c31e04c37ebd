"""Drives the official `ollama` and `openai` Python clients through ollameter with virtual
model names, and prints what each got as JSON for tests/routing.rs to check: which model
answered, the X-Ollameter-Model header where the client exposes headers, and the errors
for a name that does not exist."""

import json
import sys

import ollama
import openai


def main():
    proxy = sys.argv[1]
    client = ollama.Client(host=proxy)
    oai = openai.OpenAI(base_url=proxy + "/v1", api_key="ollama", max_retries=0)
    out = {}
    chat = client.chat(model="auto:speed", messages=[{"role": "user", "content": "hi"}], stream=False)
    out["chat_speed"] = chat.model
    out["chat_speed_stream"] = sorted({c.model for c in client.chat(
        model="auto:speed", messages=[{"role": "user", "content": "hi"}], stream=True)})
    out["generate_photo"] = client.generate(model="photo", prompt="rate this photo", stream=False).model
    out["embed_auto"] = client.embed(model="auto", input=["a photo"]).model
    raw = oai.chat.completions.with_raw_response.create(
        model="auto:quality", messages=[{"role": "user", "content": "hi"}])
    out["openai_quality_header"] = raw.headers.get("x-ollameter-model")
    out["openai_quality_model"] = raw.parse().model
    stream = oai.chat.completions.with_raw_response.create(
        model="auto:quality", messages=[{"role": "user", "content": "hi"}], stream=True)
    out["openai_quality_stream_header"] = stream.headers.get("x-ollameter-model")
    out["openai_quality_stream_models"] = sorted({c.model for c in stream.parse()})
    try:
        client.chat(model="auto:fast", messages=[{"role": "user", "content": "hi"}], stream=False)
        out["ollama_unknown"] = "no error"
    except ollama.ResponseError as e:
        out["ollama_unknown"] = {"status": e.status_code, "error": e.error}
    try:
        oai.chat.completions.create(model="auto:fast", messages=[{"role": "user", "content": "hi"}])
        out["openai_unknown"] = "no error"
    except openai.APIStatusError as e:
        out["openai_unknown"] = {"status": e.status_code, "body": e.body}
    print(json.dumps(out))


if __name__ == "__main__":
    main()

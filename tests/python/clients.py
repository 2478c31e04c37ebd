"""Drives the official `ollama` and `openai` Python clients against Ollama directly and
through ollameter, and prints what each got as JSON, so the Rust test can compare them
and check the records. Timing fields (created_at, *_duration) differ between two real
calls and are compared by presence only; everything else must be equal."""

import json
import sys

import ollama
import openai

TIMING_KEYS = {"created_at", "total_duration", "load_duration", "prompt_eval_duration", "eval_duration", "created", "id"}


def scrub(value):
    """Replaces timing values with a marker so two runs compare equal."""
    if isinstance(value, dict):
        return {k: ("<timing>" if k in TIMING_KEYS and v is not None else scrub(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def dump(obj):
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    return obj


def scenarios(host):
    client = ollama.Client(host=host)
    oai = openai.OpenAI(base_url=host + "/v1", api_key="ollama", max_retries=0)
    out = {}
    gen = client.generate(model="llama3.2", prompt="why is the sky blue", stream=False)
    out["generate"] = dump(gen)
    out["generate_stream"] = [dump(c) for c in client.generate(model="llama3.2", prompt="why is the sky blue", stream=True)]
    chat = client.chat(model="llama3.2", messages=[{"role": "user", "content": "hello there"}], stream=False)
    out["chat"] = dump(chat)
    out["chat_stream"] = [dump(c) for c in client.chat(model="llama3.2", messages=[{"role": "user", "content": "hello there"}], stream=True)]
    out["embed"] = dump(client.embed(model="nomic-embed-text", input=["a photo", "another photo"]))
    stream = oai.chat.completions.create(
        model="llama3.2", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True})
    out["openai_chat_stream"] = [dump(c) for c in stream]
    out["openai_chat_stream_no_usage"] = [dump(c) for c in oai.chat.completions.create(
        model="llama3.2", messages=[{"role": "user", "content": "hi"}], stream=True)]
    out["openai_chat"] = dump(oai.chat.completions.create(model="llama3.2", messages=[{"role": "user", "content": "hi"}]))
    try:
        client.generate(model="no-such-model", prompt="x", stream=False)
        out["missing_model"] = "no error"
    except ollama.ResponseError as e:
        out["missing_model"] = {"status": e.status_code, "error": e.error}
    return out


def main():
    direct, proxy = sys.argv[1], sys.argv[2]
    got_direct = scenarios(direct)
    got_proxy = scenarios(proxy)
    result = {"scenarios": {}, "raw_proxy": got_proxy}
    for name in got_direct:
        result["scenarios"][name] = scrub(got_direct[name]) == scrub(got_proxy[name])
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Drives the official `openai` client against a real llama.cpp `llama-server` through
ollameter, and prints what each call got as JSON (with llama.cpp's extra `timings`), so the
Rust test (tests/llama_server.rs) can check the records against the server's own usage and
timings. Each call names itself in the `x-operation` header, which the record keeps as its
operation. The server's own 400 is asked directly and through the proxy, to compare.

Usage: llama_openai.py DIRECT_URL PROXY_URL"""

import json
import sys

import openai

MODEL = "smollm2"
MESSAGES = [{"role": "user", "content": "Name three colours."}]
# Deterministic and short: the model is tiny, the point is the accounting.
SAMPLING = {"temperature": 0, "seed": 7}


def dump(obj):
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    return obj


def op(name):
    return {"extra_headers": {"x-operation": name}}


def calls(oai):
    out = {}
    stream = oai.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=24, stream=True,
        stream_options={"include_usage": True}, **SAMPLING, **op("chat_stream_usage"))
    out["chat_stream_usage"] = [dump(c) for c in stream]
    stream = oai.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=24, stream=True, **SAMPLING,
        **op("chat_stream"))
    out["chat_stream"] = [dump(c) for c in stream]
    out["chat"] = dump(oai.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=24, **SAMPLING, **op("chat")))
    out["completion"] = dump(oai.completions.create(
        model=MODEL, prompt="The sky is", max_tokens=16, **SAMPLING, **op("completion")))
    stream = oai.completions.create(
        model=MODEL, prompt="The sea is", max_tokens=16, stream=True, **SAMPLING,
        **op("completion_stream"))
    out["completion_stream"] = [dump(c) for c in stream]
    out["responses"] = dump(oai.responses.create(
        model=MODEL, input="Name three animals.", max_output_tokens=24, temperature=0,
        **op("responses")))
    stream = oai.responses.create(
        model=MODEL, input="Name three birds.", max_output_tokens=24, temperature=0, stream=True,
        **op("responses_stream"))
    out["responses_stream"] = [dump(e) for e in stream]
    return out


def bad_request(oai):
    """A request the server itself rejects with 400 (a negative `max_tokens`)."""
    try:
        oai.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=-5, **op("bad_request"))
        return {"status": None}
    except openai.APIStatusError as e:
        return {"status": e.status_code, "body": e.response.text}


def main():
    direct, proxy = sys.argv[1], sys.argv[2]
    via = openai.OpenAI(base_url=proxy + "/v1", api_key="none", max_retries=0)
    plain = openai.OpenAI(base_url=direct + "/v1", api_key="none", max_retries=0)
    result = calls(via)
    result["bad_request_proxy"] = bad_request(via)
    result["bad_request_direct"] = bad_request(plain)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

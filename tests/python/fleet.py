"""Drives the official `ollama` Python client against one ollameter in front of several
Ollama servers, and prints what it saw as JSON: the Rust test checks that the client
sees one Ollama holding every host's models, and that every call works."""

import json
import sys

import ollama


def main():
    client = ollama.Client(host=sys.argv[1])
    out = {}
    out["list"] = sorted(m.model for m in client.list().models)
    out["ps"] = sorted(m.model for m in client.ps().models)
    out["show_beta_family"] = client.show("beta").details.family
    gen = client.generate(model="alpha", prompt="hi", stream=False)
    out["generate_alpha"] = gen.done and bool(gen.response)
    chat = client.chat(model="beta", messages=[{"role": "user", "content": "hi"}], stream=False)
    out["chat_beta"] = chat.done and bool(chat.message.content)
    chunks = list(client.generate(model="shared", prompt="hi", stream=True))
    out["stream_shared"] = bool(chunks) and chunks[-1].done
    print(json.dumps(out))


if __name__ == "__main__":
    main()

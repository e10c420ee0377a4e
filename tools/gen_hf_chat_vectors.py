#!/usr/bin/env python3
"""Chat-template and tokenizer oracles from the real Hugging Face stack (transformers' own
apply_chat_template, the Rust `tokenizers` library), for tests/test_chat_hf.c and
tests/test_tokenizer_hf.c.

Writes under tests/fixtures/hf/:
- templates/<name>/tokenizer_config.json: realistic tokenizer_config.json files of the families
  that ../shared/data has none for (Llama-2-chat, Mistral/Mixtral-Instruct v0.1, Mistral-7B-Instruct
  v0.1), and of related real templates that oprm must NOT take for an exact match (Qwen2.5 adds a
  default system prompt, Llama-3.1 a dated system header); plus "plain-oprm", a template a user can
  put on a base model so that transformers renders exactly oprm's plain format.
- chat_templates.json: conversations (multi-turn, with and without a system prompt, the scoring
  prompt oprm builds) and, for every (template, conversation), the string that
  tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=...) returns,
  or the exception it raises; with the oprm format each template maps to and whether oprm's
  rendering must equal it ("expect": "equal" / "differs", with the reason).
- tokens-<name>.json for qwen3, llama3, mistral (../shared/data/tokenizers) and story-llama: for
  the 400 texts of ../shared/data/tokenizers/vectors/oracle-<name>.jsonl (story-llama: the
  qwen3 file's texts) the number of ids and an FNV-1a 64 digest of them (the committed file stays
  small; the test recomputes the digest from oprm's ids), and for every chat-rendered text of
  chat_templates.json the full ids; all from tokenizers.Tokenizer.encode(text,
  add_special_tokens=False), plus a few with add_special_tokens=True. It also checks that
  transformers' AutoTokenizer gives the same ids and prints how many texts agree with the
  shared oracle.

Usage: python3 tools/gen_hf_chat_vectors.py (repo root; torch not needed; transformers, tokenizers
and trl from PyPI, e.g. /work/venv-hf). Deterministic for given library versions."""
import json
import os
import struct
import sys

import tokenizers
import transformers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

SHARED = os.environ.get("OPRM_SHARED_DATA", os.path.join("..", "shared", "data"))
OUT = "tests/fixtures/hf"

SCORING_SYSTEM = ("You are a reward model. Rate the quality of the assistant's response to the user's request "
                  "on a scale from 1 (very poor) to 9 (excellent).")
SCORING_USER = ("Conversation:\nUser: What is the capital of France?\n\nAssistant: Let me think.\n\n"
                "User: Just the name, please.\n\nResponse to rate:\nParis.")

CONVERSATIONS = [
    [{"role": "user", "content": "Hello"}],
    [{"role": "system", "content": "You are a careful grader."}, {"role": "user", "content": "What is 2+2?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Tell me a joke."}],
    [{"role": "system", "content": "You are a helpful assistant"}, {"role": "user", "content": "Hello"},
     {"role": "assistant", "content": "Hi there"}, {"role": "user", "content": "Who are you"},
     {"role": "assistant", "content": "   I am an assistant   "},
     {"role": "user", "content": " Another question, with\nnew lines, unicode (h\u00e9llo \u2014 \u65e5\u672c\u8a9e \U0001F642) and\ttabs \n"}],
    [{"role": "system", "content": SCORING_SYSTEM}, {"role": "user", "content": SCORING_USER}],
    [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "One?"},
     {"role": "assistant", "content": "1"}, {"role": "user", "content": "Two?"},
     {"role": "assistant", "content": " 2 "}],
]

# Official templates of the families ../shared/data has no tokenizer_config.json with a template for
# (as published in the model repositories' tokenizer_config.json).
LLAMA2_CHAT = ("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
               "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}"
               "{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
               "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
               "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
               "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}"
               "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
               "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}"
               "{% endfor %}")
MIXTRAL_INSTRUCT = ("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
                    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
                    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
                    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
                    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}")
MISTRAL_V01_INSTRUCT = MIXTRAL_INSTRUCT.replace("{{ message['content'] + eos_token}}",
                                                "{{ message['content'] + eos_token + ' ' }}")
# The ChatML template oprm writes for its demo model (src/synth/tokfiles.c).
CHATML_OPRM = ("{%- for message in messages %}"
               "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
               "{%- endfor %}"
               "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")
# oprm's plain format (base models) as a Jinja template: with it transformers renders what oprm renders.
PLAIN_OPRM = ("{%- for message in messages %}{{- message['role'] | capitalize + ': ' + message['content'] + '\\n\\n' }}"
              "{%- endfor %}{%- if add_generation_prompt %}{{- 'Assistant: ' }}{%- endif %}")


def trl_template(name):
    import trl
    with open(os.path.join(os.path.dirname(trl.__file__), "chat_templates", name + ".jinja")) as f:
        return f.read()


def tok_dir(name):
    return os.path.join(SHARED, "tokenizers", name) if name != "story-llama" else os.path.join(SHARED, "models", name)


def fast_tokenizer(name, bos, eos):
    return PreTrainedTokenizerFast(tokenizer_file=os.path.join(tok_dir(name), "tokenizer.json"), bos_token=bos,
                                   eos_token=eos)


# name: (oprm format, where the template comes from, tokenizer to render with, bos, eos, notes)
TEMPLATES = {
    "qwen3": ("chatml", "shared", "qwen3", None, "<|im_end|>"),
    "llama3": ("llama3", "shared", "llama3", "<|begin_of_text|>", "<|end_of_text|>"),
    "llama2-chat": ("llama2", LLAMA2_CHAT, "mistral", "<s>", "</s>"),
    "mistral-instruct": ("mistral", MIXTRAL_INSTRUCT, "mistral", "<s>", "</s>"),
    "llama3-instruct": ("llama3", "trl:llama3", "llama3", "<|begin_of_text|>", "<|eot_id|>"),
    "qwen3-instruct-2507": ("chatml", "trl:qwen3_instruct_2507", "qwen3", None, "<|im_end|>"),
    "plain-oprm": ("plain", PLAIN_OPRM, "story-llama", "<|start_story|>", "<|end_story|>"),
    "chatml-oprm": ("chatml", CHATML_OPRM, "qwen3", None, "<|im_end|>"),
    # real templates that are NOT one oprm reproduces: oprm must say so (family, not exact)
    "mistral-instruct-v0.1": ("mistral", MISTRAL_V01_INSTRUCT, "mistral", "<s>", "</s>"),
    "qwen2.5": ("chatml", "trl:qwen2_5", "qwen3", None, "<|im_end|>"),
    "llama3.1": ("llama3", "trl:llama3_1", "llama3", "<|begin_of_text|>", "<|eot_id|>"),
}
INEXACT = {"mistral-instruct-v0.1": "a space after every </s>",
           "qwen2.5": "a default system prompt when the conversation has none",
           "llama3.1": "a system header with a knowledge cutoff and today's date"}


def expectation(name, conv, gen):
    """Whether oprm's rendering must equal transformers', and why not where it need not."""
    has_system = conv[0]["role"] == "system"
    if name in INEXACT:
        if name == "qwen2.5" and has_system:
            return "equal", ""
        if name == "mistral-instruct-v0.1" and sum(m["role"] == "assistant" for m in conv) == 0:
            return "equal", ""
        return "differs", "the template adds " + INEXACT[name]
    if name == "qwen3" and not gen:
        return "differs", "Qwen3 opens the last assistant turn with an empty <think></think> block"
    if name == "llama3" and not gen:
        return "differs", "this Llama-3 template always ends with the assistant header (no add_generation_prompt test)"
    return "equal", ""


def render(tok, conv, gen):
    try:
        return tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen), None
    except Exception as e:  # e.g. Mistral's template refuses a system message
        return None, "%s: %s" % (type(e).__name__, str(e).splitlines()[0])


def fnv64(ids):
    h = 0xcbf29ce484222325
    for b in struct.pack("<%di" % len(ids), *ids):
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def main():
    os.makedirs(OUT, exist_ok=True)
    templates, cases = [], []
    for name, (fmt, src, tokname, bos, eos) in TEMPLATES.items():
        if src == "shared":
            tok = AutoTokenizer.from_pretrained(tok_dir(tokname))
            text = tok.chat_template
            where = "../shared/data/tokenizers/%s/tokenizer_config.json" % tokname
        else:
            text = trl_template(src[4:]) if src.startswith("trl:") else src
            tok = fast_tokenizer(tokname, bos, eos)
            tok.chat_template = text
            d = os.path.join(OUT, "templates", name)
            os.makedirs(d, exist_ok=True)
            cfg = {"bos_token": bos, "eos_token": eos, "chat_template": text,
                   "tokenizer_class": "PreTrainedTokenizerFast"}
            with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
                json.dump(cfg, f, indent=2, ensure_ascii=False)
                f.write("\n")
            where = os.path.join(d, "tokenizer_config.json")
        templates.append({"name": name, "format": fmt, "file": where, "tokenizer": tokname,
                          "bos": tok.bos_token, "eos": tok.eos_token, "exact": name not in INEXACT,
                          "fnv64": "%016x" % int(fnv64_bytes(text.encode()), 16)})
        for ci, conv in enumerate(CONVERSATIONS):
            gen = conv[-1]["role"] == "user"
            hf, error = render(tok, conv, gen)
            exp, why = expectation(name, conv, gen)
            if error:
                exp, why = "hf_error", "transformers raises; oprm renders it anyway (see docs/huggingface.md)"
            case = {"template": name, "conversation": ci, "add_generation_prompt": gen, "expect": exp}
            if why:
                case["why"] = why
            if error:
                case["hf_error"] = error
            else:
                case["hf"] = hf
            cases.append(case)
    fix = {"generator": "tools/gen_hf_chat_vectors.py", "transformers": transformers.__version__,
           "note": "hf = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=...); "
                   "oprm renders the scoring prompt as the add_generation_prompt=True text followed by the cue "
                   "(for the [INST] formats, llama2 and mistral, after one space)",
           "conversations": CONVERSATIONS, "templates": templates, "cases": cases}
    with open(os.path.join(OUT, "chat_templates.json"), "w") as f:
        json.dump(fix, f, indent=1, ensure_ascii=False)
        f.write("\n")
    n_eq = sum(c["expect"] == "equal" for c in cases)
    print("chat templates: %d cases, %d must be equal, %d differ, %d transformers errors"
          % (len(cases), n_eq, sum(c["expect"] == "differs" for c in cases), sum(c["expect"] == "hf_error" for c in cases)))

    chat_texts = sorted({c["hf"] for c in cases if "hf" in c})
    chat_texts += [c["hf"] + (" " if c["hf"].endswith("[/INST]") else "") + "Score: 7" for c in cases
                   if "hf" in c and c["add_generation_prompt"]]
    chat_texts = sorted(set(chat_texts))
    for name in ["qwen3", "llama3", "mistral", "story-llama"]:
        tk = tokenizers.Tokenizer.from_file(os.path.join(tok_dir(name), "tokenizer.json"))
        auto = AutoTokenizer.from_pretrained(tok_dir(name))
        oracle_file = os.path.join(SHARED, "tokenizers", "vectors", "oracle-%s.jsonl" % (name if name != "story-llama" else "qwen3"))
        with open(oracle_file) as f:
            oracle = [json.loads(l) for l in f]
        digests, agree, auto_agree = [], 0, 0
        for o in oracle:
            ids = tk.encode(o["text"], add_special_tokens=False).ids
            agree += ids == o["ids"]
            auto_agree += auto(o["text"], add_special_tokens=False)["input_ids"] == ids
            digests.append([len(ids), fnv64(ids)])
        chat = []
        for t in chat_texts:
            ids = tk.encode(t, add_special_tokens=False).ids
            auto_agree += auto(t, add_special_tokens=False)["input_ids"] == ids
            chat.append({"text": t, "ids": ids})
        special = [{"text": t, "ids": tk.encode(t, add_special_tokens=True).ids}
                   for t in ["Hello world", "Score: 7", "Once upon a time"]]
        out = {"generator": "tools/gen_hf_chat_vectors.py", "tokenizers": tokenizers.__version__,
               "tokenizer": os.path.relpath(os.path.join(tok_dir(name), "tokenizer.json"), SHARED),
               "oracle_texts": os.path.relpath(oracle_file, SHARED),
               "note": "tokenizers.Tokenizer.from_file(tokenizer).encode(text, add_special_tokens=False).ids; "
                       "oracle: [number of ids, FNV-1a 64 of the ids as int32 little-endian] per text",
               "oracle": digests, "chat": chat, "special": special}
        with open(os.path.join(OUT, "tokens-%s.json" % name), "w") as f:
            json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
            f.write("\n")
        print("%s: tokenizers %s = shared oracle on %d/%d texts; AutoTokenizer = tokenizers on %d/%d; %d chat texts"
              % (name, tokenizers.__version__, agree, len(oracle), auto_agree, len(oracle) + len(chat), len(chat)))


def fnv64_bytes(b):
    h = 0xcbf29ce484222325
    for x in b:
        h = ((h ^ x) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


if __name__ == "__main__":
    sys.exit(main())

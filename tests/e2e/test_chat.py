# SPDX-License-Identifier: MIT
"""Chat templates against the models' own Jinja templates rendered by the
PyPI jinja2 package (as Hugging Face renders them: a sandboxed environment
with trim_blocks and lstrip_blocks): SmolLM2's ChatML template (from the
model file), Llama 2's and Llama 3's (the text of their tokenizer_config),
each put into a GGUF file's tokenizer.chat_template:

- chat_detect() recognizes each, and takes SmolLM2's default system prompt;
- chat_format() of conversations (with and without a system prompt, a
  multi-turn one, padded and non-ASCII contents) equals the template's
  rendering with the generation prompt, byte for byte;
- a later turn, formatted as `pinfer chat` does after the assistant's reply
  and end-of-turn token, continues the first turn's text into exactly the
  rendering of the whole conversation; so does it after a reply cut off
  before its end-of-turn token, closed with chat_turn_end().
"""
import os
import subprocess
import sys
import tempfile

from tap import MODEL, end, helper, ok, skip_all

HELPER = helper("print_chat")
try:
    import gguf
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError:
    skip_all("gguf or jinja2 is not installed (make venv)")
if not os.path.exists(MODEL):
    skip_all(f"{MODEL} missing (make model)")

LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}"
    "{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}")
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}")


def model_template():
    f = gguf.GGUFReader(MODEL).fields["tokenizer.chat_template"]
    return bytes(f.parts[f.data[0]]).decode()


# name, template, bos, eos (the end-of-turn token the assistant's reply ends with)
TEMPLATES = [("chatml", model_template(), "<|im_start|>", "<|im_end|>"),
             ("llama2", LLAMA2, "<s>", "</s>"),
             ("llama3", LLAMA3, "<|begin_of_text|>", "<|eot_id|>")]

SYS = {"role": "system", "content": "You answer in one word."}
CONVERSATIONS = [
    [{"role": "user", "content": "Hi there!"}],
    [SYS, {"role": "user", "content": "What is 2+2?"}],
    [SYS, {"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "Four."},
     {"role": "user", "content": "And 3+3?"}],
    [{"role": "user", "content": "  padded,\nhéllo 世界 🙂\n"}],
]


def render(template, bos, eos, messages):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(msg):
        raise ValueError(msg)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(messages=messages, add_generation_prompt=True,
                                            bos_token=bos, eos_token=eos)


def fmt(path, messages, later=False):
    args = [HELPER] + (["--later"] if later else []) + [path]
    for m in messages:
        args += [m["role"], m["content"]]
    p = subprocess.run(args, capture_output=True)
    name, system, turn_end, text = p.stdout.decode().split("\n", 3)
    return p.returncode, name, system, text, turn_end


def main():
    with tempfile.TemporaryDirectory() as tmp:
        for name, template, bos, eos in TEMPLATES:
            path = os.path.join(tmp, f"{name}.gguf")
            w = gguf.GGUFWriter(path, "llama")
            w.add_string("tokenizer.chat_template", template)
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_tensors_to_file()
            w.close()
            rc, got, system, _, turn_end = fmt(path, CONVERSATIONS[0])
            want_sys = "You are a helpful AI assistant named SmolLM, trained by Hugging Face" \
                if name == "chatml" else ""
            ok(rc == 0 and got == name and system == want_sys,
               f"{name}: recognized from tokenizer.chat_template"
               + (f", default system prompt {system!r}" if system else ""))
            for i, conv in enumerate(CONVERSATIONS):
                # the CLI puts the default system prompt in front, as the template does
                sent = conv if conv[0]["role"] == "system" or not want_sys else \
                    [{"role": "system", "content": want_sys}] + conv
                want = render(template, bos, eos, conv)
                rc, _, _, text, _ = fmt(path, sent)
                ok(rc == 0 and text == want,
                   f"{name}: conversation {i} ({len(conv)} messages) formatted as the "
                   "template renders it", f"got  {text!r}\nwant {want!r}")
            # a second turn, as pinfer chat feeds it after the reply and its end token
            conv = CONVERSATIONS[2]
            _, _, _, first, _ = fmt(path, conv[:2])
            _, _, _, later, _ = fmt(path, conv[3:], later=True)
            reply = " Four. " if name == "llama2" else "Four."   # llama2: ' ' + reply + ' '
            text = first + reply + eos + later
            want = render(template, bos, eos, conv)
            ok(text == want, f"{name}: first turn + reply + {eos} + the later turn's text = "
               "the whole conversation's rendering", f"got  {text!r}\nwant {want!r}")
            # the reply cut off at -n: chat closes the turn with chat_turn_end()
            text = first + reply.rstrip(" ") + turn_end + later
            ok(text == want, f"{name}: first turn + a reply without its end + {turn_end!r} + "
               "the later turn's text = the whole conversation's rendering",
               f"got  {text!r}\nwant {want!r}")
    end()


if __name__ == "__main__":
    main()

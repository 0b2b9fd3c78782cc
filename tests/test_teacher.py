"""The offline teacher server: guided decoding plan, real protocol, and the real SmolLM2 end to end."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import openai
import pytest

from pipeline.core.labels import DOCUMENT_TYPES, DOMAINS
from pipeline.teacher.prompt import load_prompt, reply_schema, response_format
from pipeline.teacher.reply import parse_reply
from pipeline.teacher.server import UnsupportedSchema, gguf_location, schema_fields


def test_schema_fields_follow_the_label_schema() -> None:
    fields = schema_fields(reply_schema())
    assert [f.name for f in fields] == ["document_type", "domain", "educational_score"]
    assert fields[0].options == [json.dumps(v) for v in DOCUMENT_TYPES]
    assert fields[1].options == [json.dumps(v) for v in DOMAINS]
    assert fields[2].options == ["1", "2", "3", "4", "5"]
    with pytest.raises(UnsupportedSchema):
        schema_fields({"type": "object", "properties": {"why": {"type": "string"}}})
    with pytest.raises(UnsupportedSchema):
        schema_fields({"type": "array"})


def test_gguf_ships_with_the_package() -> None:
    directory, name = gguf_location()
    assert (Path(directory) / name).stat().st_size > 50_000_000


@pytest.fixture(scope="module")
def smol_url() -> str:
    from pipeline.teacher.server import serve

    server, _ = serve("127.0.0.1", 0, threads=1)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


@pytest.mark.slow
def test_real_smollm2_speaks_the_protocol(smol_url: str) -> None:
    client = openai.OpenAI(api_key="unused", base_url=smol_url, max_retries=0, timeout=600)
    assert [m.id for m in client.models.list()] == ["SmolLM2-135M-Instruct"]
    prompt = load_prompt()
    messages = prompt.messages("A case of pneumonia", "Case presentation",
                               "A 45-year-old woman presented with fever and productive cough for three days.")  # fmt: skip
    r = client.chat.completions.create(model="SmolLM2-135M-Instruct", messages=messages, temperature=0,  # type: ignore[arg-type]
                                       max_tokens=64, response_format=response_format())  # type: ignore[arg-type]  # fmt: skip
    choice = r.choices[0]
    assert choice.finish_reason == "stop"
    labels = parse_reply(choice.message.content, choice.finish_reason)  # guided: always valid
    assert set(labels) == {"document_type", "domain", "educational_score"}
    assert r.usage is not None and r.usage.prompt_tokens > 1000 and 10 < r.usage.completion_tokens < 64
    # a max_tokens that cuts the JSON gives what a real server gives: finish_reason length
    r = client.chat.completions.create(model="x", messages=messages, max_tokens=5, response_format=response_format())  # type: ignore[arg-type]
    assert r.choices[0].finish_reason == "length" and r.usage is not None and r.usage.completion_tokens == 5
    # free generation without a schema
    r = client.chat.completions.create(model="x", messages=[{"role": "user", "content": "Say hello."}], max_tokens=4)
    assert r.choices[0].finish_reason in ("stop", "length") and r.usage is not None and r.usage.completion_tokens <= 4
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="x", messages=[], max_tokens=4)


@pytest.mark.slow
def test_annotate_without_base_url_runs_the_offline_teacher_end_to_end(tmp_path: Path) -> None:
    """The default path: annotate starts SmolLM2 on 127.0.0.1, labels the sample through the real client, stops it."""
    from pipeline.cli import main
    from tests.annotate_helpers import make_sample
    from tests.test_annotate import outputs

    texts = {
        "e1": "A 62-year-old man presented with crushing chest pain radiating to the left arm; ECG showed ST elevation.",
        "e2": "This study was supported by a grant from the National Institutes of Health.",
        "e3": "Insulin binds its receptor tyrosine kinase and triggers GLUT4 translocation to the membrane.",
    }
    make_sample(tmp_path, list(texts), texts=texts)
    assert main(["annotate", "--workdir", str(tmp_path), "--no-progress"]) == 0
    ann, rej = outputs(tmp_path)
    assert len(ann) == 3 and not rej
    assert {a["teacher_model"] for a in ann.values()} == {"SmolLM2-135M-Instruct"}
    assert all(a["completion_tokens"] > 0 and a["prompt_tokens"] > 1000 for a in ann.values())
    assert (tmp_path / "cache" / "teacher-server.log").exists()

# The official openai SDK as a Realtime transcription client of harkd. Every server event is
# read raw and validated with the SDK's own pydantic models in strict mode; fields the models
# do not declare are allowed only where OpenAI's server sends them too. Prints the events as
# JSON; any mismatch raises (non-zero exit).
import base64, json, sys
from openai import OpenAI
from pydantic import BaseModel, TypeAdapter
from openai.types.realtime import RealtimeServerEvent
from openai.types.beta.realtime import RealtimeServerEvent as BetaServerEvent
from openai.types.beta.realtime.transcription_session import TranscriptionSession

base, token, scenario, audio_path = sys.argv[1:5]
audio = open(audio_path, "rb").read()
client = OpenAI(api_key=token, base_url=base, websocket_base_url=base.replace("http://", "ws://"))
LOGPROBS = ["item.input_audio_transcription.logprobs"]
# Session-object fields OpenAI's server sends that the SDK's models do not declare.
GA_EXTRA = {"session.id", "session.object", "session.expires_at"}
BETA_EXTRA = {"session.id", "session.object", "session.expires_at", "session.include",
              "session.input_audio_noise_reduction"}


def extras(model, path=""):
    found = []
    if isinstance(model, BaseModel):
        found += [f"{path}{k}" for k in (model.model_extra or {})]
        for name in type(model).model_fields:
            found += extras(getattr(model, name), f"{path}{name}.")
    elif isinstance(model, list):
        for x in model:
            found += extras(x, path)
    return found


def check(adapter, raw, allowed):
    event = json.loads(raw)
    if event["type"] == "transcription_session.created":
        # OpenAI's server sends it; the SDK's beta union lacks it: its session must still be
        # what the SDK's TranscriptionSession model (of `.updated`) accepts.
        assert set(event) == {"type", "event_id", "session"}, event
        model = TranscriptionSession.model_validate(event["session"], strict=True)
        unknown = {f"session.{k}" for k in model.model_extra or {}} - allowed
    else:
        model = adapter.validate_python(event, strict=True)
        assert model.type == event["type"], (model, event)
        unknown = set(extras(model)) - allowed
    assert not unknown, f"fields the SDK does not know in {event['type']}: {unknown}"
    return event


def session_until(conn, adapter, allowed, kind):
    out = []
    while True:
        event = check(adapter, conn.recv_bytes(), allowed)
        print(event["type"], file=sys.stderr, flush=True)
        out.append(event)
        if event["type"] == kind:
            return out


def append_all(conn, data, piece):
    for i in range(0, len(data), piece):
        conn.input_audio_buffer.append(audio=base64.b64encode(data[i:i + piece]).decode())


events = []
if scenario == "ga":
    ga = TypeAdapter(RealtimeServerEvent)
    with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        events += session_until(conn, ga, GA_EXTRA, "session.created")
        conn.session.update(session={"type": "transcription", "audio": {"input": {
            "format": {"type": "audio/pcm", "rate": 24000},
            "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}},
            "include": LOGPROBS})
        events += session_until(conn, ga, GA_EXTRA, "session.updated")
        append_all(conn, audio, 4800)
        events += session_until(conn, ga, GA_EXTRA,
                                "conversation.item.input_audio_transcription.completed")
        # A binary frame is answered with an error event; the session goes on.
        conn.send_raw(b"\x00" * 64)
        events += session_until(conn, ga, GA_EXTRA, "error")
        # The silence after the endpoint is uncommitted: clear it, then commit nothing.
        conn.input_audio_buffer.clear()
        events += session_until(conn, ga, GA_EXTRA, "input_audio_buffer.cleared")
        conn.input_audio_buffer.commit(event_id="evt_empty_commit")
        events += session_until(conn, ga, GA_EXTRA, "error")
        conn.session.update(session={"type": "transcription", "include": None})
        events += session_until(conn, ga, GA_EXTRA, "session.updated")
elif scenario == "pcmu":
    ga = TypeAdapter(RealtimeServerEvent)
    with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        events += session_until(conn, ga, GA_EXTRA, "session.created")
        conn.session.update(session={"type": "transcription", "audio": {"input": {
            "format": {"type": "audio/pcmu"}, "turn_detection": None}}})
        events += session_until(conn, ga, GA_EXTRA, "session.updated")
        append_all(conn, audio, 1600)
        conn.input_audio_buffer.commit()
        events += session_until(conn, ga, GA_EXTRA,
                                "conversation.item.input_audio_transcription.completed")
elif scenario == "beta":
    beta = TypeAdapter(BetaServerEvent)
    with client.beta.realtime.connect(model="gpt-4o-transcribe",
                                      extra_query={"intent": "transcription"}) as conn:
        events += session_until(conn, beta, BETA_EXTRA, "transcription_session.created")
        conn.transcription_session.update(session={"input_audio_format": "pcm16",
            "input_audio_transcription": {"model": "gpt-4o-transcribe", "language": "en"},
            "turn_detection": None, "include": LOGPROBS})
        events += session_until(conn, beta, BETA_EXTRA, "transcription_session.updated")
        append_all(conn, audio, 4800)
        conn.input_audio_buffer.commit()
        events += session_until(conn, beta, BETA_EXTRA,
                                "conversation.item.input_audio_transcription.completed")
        conn._connection.send(b"\x00" * 64)
        events += session_until(conn, beta, BETA_EXTRA, "error")
else:
    raise SystemExit(f"unknown scenario {scenario}")
print(json.dumps(events))

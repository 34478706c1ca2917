"""The Gemma 4 E2B audio prompt, as rendered by its chat template (docs/model.md §5.2).

One user turn holding the audio (first, as the model card recommends) and the instruction,
then the generation prompt. No system turn and no thought block: thinking is off on E2B.
"""

ASR_INSTRUCTION = (
    "Transcribe the following speech segment in {lang} into {lang} text.\n\n"
    "Follow these specific instructions for formatting the answer:\n"
    "* Only output the transcription, with no newlines.\n"
    "* When transcribing numbers, write the digits, i.e. write 1.7 and not one point seven, "
    "and write 3 instead of three."
)

AST_INSTRUCTION = (
    "Transcribe the following speech segment in {source}, then translate it into {target}.\n"
    "When formatting the answer, first output the transcription in {source}, then one newline, "
    "then output the string '{target}: ', then the translation in {target}."
)


def asr_instruction(language: str) -> str:
    return ASR_INSTRUCTION.format(lang=language)


def ast_instruction(source: str, target: str) -> str:
    return AST_INSTRUCTION.format(source=source, target=target)


def user_turn_prompt(audio_token: str, instruction: str) -> str:
    # Template: items of a list content are concatenated without separators; text items trimmed.
    return f"<bos><|turn>user\n{audio_token}{instruction.strip()}<turn|>\n<|turn>model\n"


def asr_prompt_text(audio_token: str, language: str = "English") -> str:
    return user_turn_prompt(audio_token, asr_instruction(language))

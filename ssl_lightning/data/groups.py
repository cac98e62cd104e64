"""Which group (patient, slide) every image belongs to, from `data.group_by`.

Tiles of one patient share stain, scanner and tissue; a split that puts them on both sides lets a model score by
recognising the patient. The rule names the group of every file:
- `auto`: folders: the first folder level below the class folder when images sit in sub-folders there (a file
  directly in a class folder is a group of its own), otherwise one group per image; manifests: the `group`
  column when there is one, otherwise one group per image;
- `none`: one group per image (the split of the built-in data sets, and the suite's behaviour before groups);
- `folder:<k>`: the k-th folder level below the class folder (manifests: below the deepest folder that holds
  every listed file, absolute and relative paths alike: for a class/patient tree folder:1 is the class folder,
  folder:2 the patient; counting the path as written put every absolute path's level 1 at "/");
- anything else is a regular expression whose first capture group, searched in the file's path relative to its
  class folder (manifests: the path as written), is the group id.

Group ids are global: the same id under two classes is one group (a patient with tiles of both classes is still
one patient), counted for its majority class when splits are stratified.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from ssl_lightning.errors import UserError

log = logging.getLogger("ssl_lightning")

AUTO, NONE = "auto", "none"
_FOLDER = re.compile(r"^folder:(\d+)$")


@dataclass(frozen=True)
class GroupRule:
    """A parsed `data.group_by`."""

    text: str
    kind: str  # auto | none | folder | regex
    level: int = 0  # folder: 1 = the first folder below the class folder
    pattern: re.Pattern[str] | None = None

    def describe(self, column: bool = False) -> str:
        if self.kind == "folder":
            return f"folder level {self.level} below {'the common folder' if column else 'the class folder'}"
        if self.kind == "regex":
            return f"the first group of {self.text!r}"
        return "the manifest's group column" if column else "the first folder below the class folder"


def parse_rule(value: str | None) -> GroupRule:
    """`data.group_by` as a rule; UserError for a folder level below 1 or a regex without a capture group."""
    text = AUTO if value is None else str(value)
    if text in (AUTO, NONE):
        return GroupRule(text, text)
    folder = _FOLDER.match(text)
    if folder:
        level = int(folder.group(1))
        if level < 1:
            raise UserError(f"data.group_by={text}: folder levels count from 1 (the folder below the class folder)")
        return GroupRule(text, "folder", level=level)
    if text.startswith("folder:"):
        raise UserError(f"data.group_by={text} is not folder:<k> with a whole number k >= 1, e.g. folder:1")
    try:
        pattern = re.compile(text)
    except re.error as error:
        raise UserError(f"data.group_by={text!r} is not a valid regular expression ({error}); use auto, none, "
                        "folder:<k> or a pattern with one capture group, e.g. '^([^/]+)/'") from error
    if pattern.groups < 1:
        raise UserError(f"data.group_by={text!r} has no capture group; put the group id in parentheses, "
                        "e.g. '^([^/]+)/'")
    return GroupRule(text, "regex", pattern=pattern)


def _by_rule(rule: GroupRule, relative: Sequence[str], below: str = "its class folder") -> np.ndarray:
    ids = []
    for path in relative:
        if rule.kind == "folder":
            folders = PurePosixPath(path).parts[:-1]
            if len(folders) < rule.level:
                raise UserError(f"data.group_by={rule.text}: {path} has only {len(folders)} folder level(s) below "
                                f"{below}; choose a smaller level or another rule")
            ids.append(folders[rule.level - 1])
            continue
        assert rule.pattern is not None
        found = rule.pattern.search(path)
        if not found or not found.group(1):
            raise UserError(f"data.group_by={rule.text!r} finds no group id in {path}; fix the pattern so that its "
                            "first capture group matches every file")
        ids.append(found.group(1))
    return np.asarray(ids, dtype=object)


def folder_groups(rule: GroupRule, relative: Sequence[str], owners: Sequence[str]) -> np.ndarray | None:
    """Group id per file of a class-folder tree (`relative`: path below its class folder, `owners`: that class
    folder's name); None = one group per image."""
    if rule.kind == NONE:
        return None
    if rule.kind == AUTO:
        nested = [PurePosixPath(path).parts for path in relative]
        if all(len(parts) == 1 for parts in nested):
            return None
        # a file directly in a class folder is its own group; "/" cannot occur in a folder name
        return np.asarray([parts[0] if len(parts) > 1 else f"{owner}/{parts[0]}"
                           for parts, owner in zip(nested, owners, strict=True)], dtype=object)
    return _by_rule(rule, relative)


def manifest_groups(rule: GroupRule, paths: Sequence[str], column: Sequence[str] | None,
                    files: Sequence[Path] | None = None) -> np.ndarray | None:
    """Group id per manifest row: `auto` reads the group column (when present), a regex searches the path as
    written in the CSV, `folder:<k>` counts the folders of each file (`files`, resolved) below the deepest folder
    holding them all."""
    if rule.kind == NONE:
        return None
    if rule.kind == AUTO:
        return None if column is None else np.asarray(list(column), dtype=object)
    if rule.kind == "folder" and files:
        root = Path(os.path.commonpath([str(Path(file).parent) for file in files]))
        return _by_rule(rule, [Path(file).relative_to(root).as_posix() for file in files], f"{root}, the folder "
                        "that holds every listed file")
    return _by_rule(rule, paths)


def log_group_counts(how: str, groups: np.ndarray, labels: np.ndarray, classes: list[str]) -> None:
    """One log line: how many groups hold images of each class, and how many hold several classes."""
    labels = np.asarray(labels)
    per_class = [len(set(groups[labels == cls].tolist())) for cls in range(len(classes))]
    classes_per_group: dict[str, set[int]] = {}
    for group, label in zip(groups.tolist(), labels.tolist(), strict=True):
        classes_per_group.setdefault(group, set()).add(label)
    mixed = sum(len(members) > 1 for members in classes_per_group.values())
    shared = f"; {mixed} group(s) hold several classes (each counts for its majority class)" if mixed else ""
    log.info("grouping by %s: %s groups (%s)%s", how, " / ".join(map(str, per_class)), " / ".join(classes), shared)

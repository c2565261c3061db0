#!/usr/bin/env python3
"""Builds rows.jsonl, the demo Datanet, from the Python FAQ.

The content is the "Python Frequently Asked Questions" of the Python 3.11 documentation
(Copyright Python Software Foundation, PSF License Agreement), read from the reStructuredText
sources that Debian's python3.11-doc package ships beside the HTML. Each FAQ section whose
title is a question becomes one row: the title is the instruction, the section's body,
turned into plain text, is the output. Each FAQ document stands for one contributor.

Standard library only (Python 3.11). The output depends only on the FAQ sources, so the
same package gives the same bytes.

Run:
    cd /tmp && apt-get download python3.11-doc && dpkg-deb -x python3.11-doc_*.deb /tmp/pydoc
    python3 assets/datanets/python-faq/make_rows.py /tmp/pydoc
"""
import argparse
import collections
import gzip
import hashlib
import json
import os
import re
import sys
import unicodedata

# The package these rows were made from, and its release date (the date of the top entry of
# its Debian changelog), fixed here so that the output is reproducible.
PACKAGE = "python3.11-doc"
PACKAGE_VERSION = "3.11.2-6+deb12u9"
CREATED_AT = "2026-10-07T14:35:07+02:00"
LICENSE = "PSF-2.0"

# FAQ documents in the order of the FAQ's table of contents.
DOCUMENTS = ["general", "programming", "design", "library", "extending", "windows", "gui", "installed"]

MIN_ANSWER = 40
MAX_ANSWER = 1500

HTML_DIR = "usr/share/doc/python3.11/html"
CHANGELOG = "usr/share/doc/python3.11-doc/changelog.Debian.gz"


def contributor(document):
    """A demo address standing for one FAQ document (not a person, not a wallet)."""
    return "0x" + hashlib.sha256(("python-faq:" + document).encode()).hexdigest()[:40]


def warn(msg):
    print("warning: " + msg, file=sys.stderr)


# --- sections -------------------------------------------------------------------------------

ADORNMENT = re.compile(r"([!-/:-@\[-`{-~])\1{2,}\s*$")


def is_adornment(line):
    return bool(ADORNMENT.match(line))


def find_titles(lines):
    """(first line, body start, title text, style) for each section title in document order."""
    titles = []
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        prev_blank = i == 0 or not lines[i - 1].strip()
        if prev_blank and is_adornment(line) and i + 2 < n and lines[i + 1].strip() \
                and lines[i + 2].rstrip() == line.rstrip():
            titles.append((i, i + 3, lines[i + 1].strip(), (line[0], True)))
            i += 3
            continue
        if prev_blank and line.strip() and not line[0].isspace() and not is_adornment(line) \
                and i + 1 < n and is_adornment(lines[i + 1]) \
                and len(lines[i + 1].rstrip()) >= len(line.rstrip()):
            titles.append((i, i + 2, line.strip(), (lines[i + 1][0], False)))
            i += 2
            continue
        i += 1
    return titles


def split_sections(text):
    lines = [l.expandtabs(8).rstrip() for l in text.split("\n")]
    titles = find_titles(lines)
    styles = []
    sections = []
    for k, (first, start, title, style) in enumerate(titles):
        if style not in styles:
            styles.append(style)
        end = titles[k + 1][0] if k + 1 < len(titles) else len(lines)
        sections.append({"title": title, "level": styles.index(style), "body": lines[start:end]})
    for k, s in enumerate(sections):
        s["has_children"] = k + 1 < len(sections) and sections[k + 1]["level"] > s["level"]
    return sections


def make_id(text):
    """docutils' make_id: the anchor Sphinx gives a section from its title."""
    s = text.lower()
    s = unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode("ascii")
    s = re.sub(r"[^a-z0-9]+", "-", " ".join(s.split()))
    return re.sub(r"^[-0-9]+|-+$", "", s)


# --- labels, for :ref: without an explicit title --------------------------------------------

def collect_labels(sources_dir):
    """label -> title of the section it stands before, over the whole documentation."""
    labels = {}
    for root, dirs, files in os.walk(sources_dir):
        dirs.sort()
        for name in sorted(files):
            if not name.endswith(".rst.txt"):
                continue
            with open(os.path.join(root, name), encoding="utf-8") as f:
                lines = [l.expandtabs(8).rstrip() for l in f.read().split("\n")]
            starts = {first: title for first, _, title, _ in find_titles(lines)}
            for i, line in enumerate(lines):
                m = re.match(r"\.\. _([^:`]+):$", line)
                if not m:
                    continue
                j = i + 1
                while j < len(lines) and (not lines[j].strip() or re.match(r"\.\. _[^:`]+:$", lines[j])):
                    j += 1
                if j in starts:
                    labels.setdefault(m.group(1).strip().lower(), starts[j])
    return labels


# --- inline markup --------------------------------------------------------------------------

ROLE_OR_INTERPRETED = re.compile(
    r"(?<![\w`])(?::(?P<role>[\w.+-]+(?::[\w.+-]+)?):)?"
    r"`(?P<body>(?:[^`\\]|\\.)+?)`"
    r"(?::(?P<role2>[\w.+-]+(?::[\w.+-]+)?):)?(?P<ref>__?)?(?![\w`])",
    re.S,
)
LITERAL = re.compile(r"(?<![\w`])``(?P<body>\S(?:.*?\S)??)``(?![\w`])", re.S)
STRONG = re.compile(r"(?<![\w*\\])\*\*(?P<body>\S(?:.*?\S)??)\*\*(?![\w*])", re.S)
EMPHASIS = re.compile(r"(?<![\w*\\])\*(?P<body>[^\s*](?:[^*]*?[^\s*\\])??)\*(?![\w*])", re.S)
EXPLICIT = re.compile(r"(?P<title>.*?)\s*<(?P<target>[^<>]+)>$", re.S)

CALLABLE_ROLES = {"func", "meth"}


def unescape(s):
    s = re.sub(r"\\\s", "", s)
    return re.sub(r"\\(.)", r"\1", s)


def md_code(s):
    if "`" in s:
        return "`` " + s + " ``"
    return "`" + s + "`"


class Inline:
    def __init__(self, labels):
        self.labels = labels

    def role(self, role, body):
        base = role.split(":")[-1] if role else ""
        body = " ".join(body.split())
        m = EXPLICIT.match(body)
        if m and m.group("title") and base not in ("samp",):
            return unescape(m.group("title"))
        body = unescape(body)
        if base == "ref":
            title = self.labels.get(body.lower())
            if title is None:
                warn("unresolved :ref:`%s`" % body)
                return body.replace("-", " ")
            return self.plain(title)
        if base == "pep":
            return "PEP " + body.split("#")[0]
        if base == "rfc":
            return "RFC " + body.split("#")[0]
        if base == "menuselection":
            return body.replace("-->", ">")
        if base == "samp":
            return re.sub(r"\{([^}]*)\}", r"\1", body)
        if base == "abbr":
            return re.sub(r"\s*\(.*\)$", "", body)
        if base in ("term", "kbd", "file", "program", "envvar", "newsgroup", "source", "keyword",
                    "option", "dfn", "command", "mailheader", "token", "guilabel", "makevar", ""):
            return body.lstrip("!")
        # Python and C objects: func, meth, class, mod, exc, data, attr, const, obj, type, macro ...
        name = body.lstrip("!")
        if name.startswith("~"):
            name = name[1:].split(".")[-1]
        name = name.lstrip(".")
        if base in CALLABLE_ROLES and not name.endswith(")"):
            name += "()"
        return name

    def convert(self, text, literal_marks=True):
        """reStructuredText inline markup -> plain text; ``literal`` -> `literal`."""
        kept = []

        def keep(s):
            kept.append(s)
            return "\x00%d\x00" % (len(kept) - 1)

        text = LITERAL.sub(lambda m: keep(md_code(m.group("body")) if literal_marks else m.group("body")), text)

        def interpreted(m):
            body = m.group("body")
            if m.group("ref"):
                mm = EXPLICIT.match(" ".join(body.split()))
                if mm:
                    return keep(unescape(mm.group("title") or mm.group("target")))
                return keep(unescape(" ".join(body.split())))
            return keep(self.role(m.group("role") or m.group("role2") or "", body))

        text = ROLE_OR_INTERPRETED.sub(interpreted, text)
        text = STRONG.sub(lambda m: m.group("body"), text)
        text = EMPHASIS.sub(lambda m: m.group("body"), text)
        text = unescape(text)
        text = text.replace("---", "\u2014")
        text = re.sub(r"^--(?=\s)", "\u2014", text)  # a quotation's attribution
        text = re.sub(r"(?<=\s)--(?=\s)|(?<=\d)--(?=\d)", "\u2013", text)
        text = " ".join(text.split())
        while "\x00" in text:
            text = re.sub(r"\x00(\d+)\x00", lambda m: kept[int(m.group(1))], text)
        return re.sub(r"([?!])\.(?=\s|$)", r"\1", text)  # "see <question title>?."

    def plain(self, text):
        return self.convert(text, literal_marks=False)


# --- blocks ---------------------------------------------------------------------------------

BULLET = re.compile(r"([*+-]) +(\S.*)$")
ENUMERATOR = re.compile(r"(\d+\.|#\.|\d+\)|\(\d+\)|\([a-z]\)|[a-z]\)) +(\S.*)$")
DIRECTIVE = re.compile(r"\.\. +([\w:-]+)::(?: +(.*))?$")
ADMONITIONS = {"note": "Note", "warning": "Warning", "seealso": "See also", "tip": "Tip",
               "important": "Important", "hint": "Hint", "caution": "Caution",
               "attention": "Attention", "impl-detail": "CPython implementation detail"}
VERSIONS = {"versionchanged": "Changed in version", "versionadded": "New in version",
            "deprecated": "Deprecated since version"}
DROPPED = {"contents", "toctree", "index", "testsetup", "testcleanup", "tabularcolumns",
           "sectionauthor", "moduleauthor", "rubric", "raw"}
FENCE_LANG = {"python3": "python", "default": "python", "py": "python", "none": "", "text": "",
              "python": "python"}


def indent_of(line):
    return len(line) - len(line.lstrip(" "))


def dedent(lines):
    body = [l for l in lines if l.strip()]
    if not body:
        return []
    k = min(indent_of(l) for l in body)
    out = [l[k:] for l in lines]
    while out and not out[0].strip():
        out.pop(0)
    while out and not out[-1].strip():
        out.pop()
    return out


def fence(code_lines, lang):
    code = dedent(code_lines)
    lang = FENCE_LANG.get(lang, lang)
    if lang == "python" and code and code[0].startswith(">>>"):
        lang = "pycon"  # an interactive session
    return "```" + lang + "\n" + "\n".join(code) + "\n```"


class Blocks:
    """Parses a section body into blocks: {"kind": "text"|"code"|"item", "text", "list"}."""

    def __init__(self, inline, doc):
        self.inline = inline
        self.doc = doc
        self.lang = "python"  # Sphinx's default highlighting; `.. highlight::` changes it
        self.lists = 0

    def parse(self, lines):
        out = []
        i, n = 0, len(lines)
        literal_next = False
        while i < n:
            line = lines[i]
            if not line.strip():
                i += 1
                continue
            if indent_of(line) > 0:
                j = i
                while j < n and (not lines[j].strip() or indent_of(lines[j]) > 0):
                    j += 1
                block = dedent(lines[i:j])
                if literal_next or block[0].startswith(">>>"):
                    lang = self.lang if literal_next else "pycon"
                    out.append({"kind": "code", "text": fence(block, lang)})
                else:
                    out.extend(self.parse(block))
                literal_next = False
                i = j
                continue
            literal_next = False
            if line == ".." or line.startswith(".. "):
                j = i + 1
                while j < n and (not lines[j].strip() or indent_of(lines[j]) > 0):
                    j += 1
                out.extend(self.explicit(line, lines[i + 1:j]))
                i = j
                continue
            if line.startswith(">>>"):
                j = i
                while j < n and lines[j].strip():
                    j += 1
                out.append({"kind": "code", "text": fence(lines[i:j], "pycon")})
                i = j
                continue
            m = BULLET.match(line) or ENUMERATOR.match(line)
            if m and m.re is ENUMERATOR and i + 1 < n and lines[i + 1].strip() and indent_of(lines[i + 1]) == 0 \
                    and not ENUMERATOR.match(lines[i + 1]):
                m = None  # docutils: an enumerator followed by an unindented line starts a paragraph
            if m and not is_adornment(line):
                marker, first = m.group(1), m.group(2)
                list_id = self.lists
                self.lists += 1
                number = 0
                while True:
                    number += 1
                    width = indent_of(line) + len(line.strip()) - len(first)
                    j = i + 1
                    while j < n and (not lines[j].strip() or indent_of(lines[j]) >= width):
                        j += 1
                    item = [first] + [l[width:] if l.strip() else "" for l in lines[i + 1:j]]
                    label = "-" if m.re is BULLET else (str(number) + "." if m.group(1) == "#." else m.group(1))
                    out.append({"kind": "item", "list": list_id, "text": self.item(label, item)})
                    k = j
                    while k < n and not lines[k].strip():
                        k += 1
                    if k < n:
                        mm = BULLET.match(lines[k]) if m.re is BULLET else ENUMERATOR.match(lines[k])
                        if mm and indent_of(lines[k]) == 0 and (m.re is not BULLET or mm.group(1) == marker):
                            i, line, m, first = k, lines[k], mm, mm.group(2)
                            continue
                    i = j
                    break
                continue
            j = i
            while j < n and lines[j].strip() and indent_of(lines[j]) == 0:
                j += 1
            para = " ".join(l.strip() for l in lines[i:j])
            if para.endswith("::"):
                literal_next = True
                stem = para[:-2]
                if not stem.strip():  # "::" alone introduces the block and shows nothing
                    i = j
                    continue
                para = stem.rstrip() if stem[-1].isspace() or stem[-1] in ".!?:" else stem + ":"
            if j < n and lines[j].strip() and indent_of(lines[j]) > 0 and not literal_next:
                warn("%s: indented text right after a paragraph (definition list?): %r" % (self.doc, lines[j]))
            out.append({"kind": "text", "text": self.inline.convert(para)})
            i = j
        return out

    def item(self, label, lines):
        blocks = self.parse(lines)
        pad = " " * (len(label) + 1)
        rendered = render(blocks)
        if not rendered:
            return label
        return label + " " + rendered.replace("\n", "\n" + pad).replace("\n" + pad + "\n", "\n\n")

    def explicit(self, first, rest):
        m = DIRECTIVE.match(first)
        if not m:
            return []  # comments, hyperlink targets, labels, substitution definitions, footnotes
        name, arg = m.group(1), (m.group(2) or "").strip()
        name = name.split(":")[-1] if name.startswith(("py:", "rst:")) else name
        body = list(rest)
        # drop the directive's options (":name: value" lines before the first blank line)
        k = 0
        while k < len(body) and body[k].strip().startswith(":") and re.match(r"\s*:[\w-]+:", body[k]):
            k += 1
        body = dedent(body[k:])
        if name in DROPPED:
            return []
        if name == "highlight":
            self.lang = arg or "python"
            return []
        if name == "only":
            return self.parse(body)
        if name in ("code-block", "sourcecode", "code"):
            return [{"kind": "code", "text": fence(body, arg or self.lang)}]
        if name in ("doctest",):
            return [{"kind": "code", "text": fence(body, "pycon")}]
        if name in ("testcode",):
            return [{"kind": "code", "text": fence(body, "python")}]
        if name in ("testoutput",):
            return [{"kind": "code", "text": fence(body, "")}]
        if name in ADMONITIONS:
            blocks = self.parse(([arg, ""] if arg else []) + body)
            return prefix(blocks, ADMONITIONS[name] + ": ")
        if name in VERSIONS:
            head, _, tail = arg.partition(" ")
            blocks = self.parse(([tail, ""] if tail else []) + body)
            return prefix(blocks, "%s %s: " % (VERSIONS[name], head)) if blocks else \
                [{"kind": "text", "text": "%s %s." % (VERSIONS[name], head)}]
        warn("%s: directive %r kept as text" % (self.doc, name))
        return self.parse(body)


def prefix(blocks, head):
    if blocks and blocks[0]["kind"] == "text":
        blocks[0] = dict(blocks[0], text=head + blocks[0]["text"])
    else:
        blocks.insert(0, {"kind": "text", "text": head.rstrip()})
    return blocks


def render(blocks):
    # a list is tight (one item a line) unless one of its items has several paragraphs
    loose = {b["list"] for b in blocks if b["kind"] == "item" and "\n\n" in b["text"]}
    parts = []
    for k, b in enumerate(blocks):
        if k:
            tight = b["kind"] == "item" and blocks[k - 1]["kind"] == "item" \
                and b["list"] == blocks[k - 1]["list"] and b["list"] not in loose
            parts.append("\n" if tight else "\n\n")
        parts.append(b["text"])
    return "".join(parts)


# --- length cap -----------------------------------------------------------------------------

SENTENCE_END = re.compile(r"[.!?][)\"']?(?=\s+[A-Z0-9\"'(`]|$)")
NOT_AN_END = re.compile(r"(?:\be\.g|\bi\.e|\betc|\bvs|\bcf|\bMr|\bDr|\bNo)\.$")


def sentence_cut(text, room):
    """The longest run of whole sentences of text that fits in room, or ""."""
    best = 0
    for m in SENTENCE_END.finditer(text):
        if m.end() > room:
            break
        if NOT_AN_END.search(text[:m.end()]) or text[:m.end()].endswith(".."):
            continue
        best = m.end()
    return text[:best].rstrip()


def cap(blocks, limit=MAX_ANSWER):
    """Whole blocks while they fit; then whole sentences of the next prose block."""
    out = []
    truncated = False
    for b in blocks:
        if len(render(out + [b])) <= limit:
            out.append(b)
            continue
        truncated = True
        room = limit - len(render(out)) - (2 if out else 0)
        if b["kind"] in ("text", "item") and "```" not in b["text"] and room >= 120:
            cut = sentence_cut(b["text"], room)
            if cut and cut not in ("-", "1."):
                out.append(dict(b, text=cut))
        break
    if truncated:
        # a paragraph that announces what was cut ("... as follows:") goes with it
        while out and out[-1]["kind"] != "code" and out[-1]["text"].rstrip().endswith(":"):
            text = out.pop()["text"]
            kept = "" if "```" in text else sentence_cut(text, len(text) - 1)
            if kept and kept not in ("-", "1."):
                out.append({"kind": "text", "text": kept})
    return render(out)


# --- rows -----------------------------------------------------------------------------------

def question_level(sections):
    levels = [s["level"] for s in sections if "?" in s["title"] and s["level"] > 0]
    return collections.Counter(levels).most_common(1)[0][0] if levels else None


def rows_for(document, text, inline, stats):
    sections = split_sections(text)
    qlevel = question_level(sections)
    parser = Blocks(inline, document)
    seen = set()
    auto_ids = 0
    rows = []
    for s in sections:
        blocks = parser.parse(s["body"])  # every body, so that `.. highlight::` carries on
        anchor = make_id(inline.plain(s["title"]))
        if anchor in seen:  # docutils numbers a repeated id: id1, id2, ...
            auto_ids += 1
            anchor = "id%d" % auto_ids
        seen.add(anchor)
        if s["level"] == 0 or s["has_children"]:
            continue
        if "?" not in s["title"] and s["level"] != qlevel:
            if blocks:
                stats["not a question"].append("faq/%s: %s" % (document, s["title"]))
            continue
        question = inline.convert(s["title"])
        answer = cap(blocks)
        full = render(blocks)
        if len(answer) < MIN_ANSWER:
            stats["answer too short"].append("faq/%s: %s (%d chars)" % (document, question, len(answer)))
            continue
        if len(answer) < len(full):
            stats["answer capped"].append("faq/%s: %s (%d -> %d chars)" % (document, question, len(full), len(answer)))
        rows.append({
            "instruction": question,
            "input": "",
            "output": answer,
            "contributor": contributor(document),
            "created_at": CREATED_AT,
            "license": LICENSE,
            "source": "faq/%s#%s" % (document, anchor),
        })
    return rows


def check_package(root):
    path = os.path.join(root, CHANGELOG)
    if not os.path.exists(path):
        warn("no %s; cannot check the package version" % CHANGELOG)
        return
    with gzip.open(path, "rt", encoding="utf-8") as f:
        top = f.readline()
    m = re.match(r"\S+ \(([^)]+)\)", top)
    if not m or m.group(1) != PACKAGE_VERSION:
        warn("%s is %s, these rows were made from %s (created_at stays %s)"
             % (PACKAGE, m.group(1) if m else "unknown", PACKAGE_VERSION, CREATED_AT))


# Community datasets hold the same answer sent twice, sometimes lightly changed. The demo
# shows duplicate detection on a few such rows: (row index, how it was changed), each sent
# again by the contributor of the next FAQ document. Fixed, so the output is reproducible.
RESUBMITTED = [(3, "copy"), (40, "copy"), (75, "case"), (100, "word"), (120, "word"), (150, "trim")]


def resubmissions(rows):
    out = []
    for index, change in RESUBMITTED:
        row = dict(rows[index])
        answer = row["output"]
        if change == "case":
            answer = answer[0].lower() + answer[1:]
        elif change == "word":
            words = answer.split(" ")
            words[len(words) // 2] = "really"
            answer = " ".join(words)
        elif change == "trim":
            answer = answer.rsplit(". ", 1)[0] + "."
        document = row["source"].split("#")[0].split("/")[1]
        following = DOCUMENTS[(DOCUMENTS.index(document) + 1) % len(DOCUMENTS)]
        row.update(output=answer, contributor=contributor(following),
                   source=row["source"] + "#resubmitted-" + change)
        out.append(row)
    return out


PACKAGE_PAGE = re.compile(r"https?://[a-z.]*py" + r"pi[a-z.]*/project/([A-Za-z0-9_.-]+)/?")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("package", help="folder %s was extracted into (dpkg-deb -x)" % PACKAGE)
    ap.add_argument("-o", "--output", default=os.path.join(here, "rows.jsonl"))
    ap.add_argument("-v", "--verbose", action="store_true", help="list what was dropped or cut")
    args = ap.parse_args()

    sources = os.path.join(args.package, HTML_DIR, "_sources")
    faq = os.path.join(sources, "faq")
    if not os.path.isdir(faq):
        sys.exit("no %s: extract %s there first (see --help)" % (faq, PACKAGE))
    check_package(args.package)

    inline = Inline(collect_labels(sources))
    stats = collections.defaultdict(list)
    rows = []
    for document in DOCUMENTS:
        with open(os.path.join(faq, document + ".rst.txt"), encoding="utf-8") as f:
            rows.extend(rows_for(document, f.read(), inline, stats))

    rows.extend(resubmissions(rows))

    for row in rows:
        # The project names no package index host; a project page becomes its name.
        row["output"] = PACKAGE_PAGE.sub(r"the `\1` package on the Python Package Index", row["output"])

    with open(args.output, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")

    per = collections.Counter(r["source"].split("#")[0] for r in rows)
    print("%d rows -> %s" % (len(rows), args.output))
    for document in DOCUMENTS:
        print("  faq/%-12s %3d  %s" % (document, per["faq/" + document], contributor(document)))
    for what in ("not a question", "answer too short", "answer capped"):
        print("%s: %d" % (what, len(stats[what])))
        if args.verbose:
            for s in stats[what]:
                print("  " + s)


if __name__ == "__main__":
    main()

"""Model summaries: the text Keras 3's ``model.summary()`` prints, a JSON form, and an explained form.

Reference: keras/src/utils/summary_utils.py (``print_summary``). The table is built with the
same rich markup, column widths and console settings, so at the same width the characters
are the same. Shapes are kcompat's own: for ``Activation("glu")`` Keras 3's summary shows the
unhalved input shape, kcompat the real (halved) one.

A nested model is one row with its class (Sequential / Functional), the output shape of its last
call and the parameters of all its layers, as Keras prints it; ``expand_nested`` adds its layers
below it, indented ("   └ name"), with the shapes Keras's own graph of the nested model gives them
(built on its own InputLayers) and no connections.
"""
from __future__ import annotations

import shutil
from typing import Any

import numpy as np

from .errors import KcompatError
from .layers.base import fmt_shape
from .model import Model
from .nested import without_weights
from .spec import LayerSpec, ModelSpec, Node, TensorRef, keras_layers


# ------------------------------------------------------------------ Keras's rich markup helpers
def _number(x: Any) -> str:
    return f"[color(45)]{x}[/]" if x is None else f"[color(34)]{x}[/]"


def _bold(x: str) -> str:
    return f"[bold]{x}[/]"


def _shape_markup(shape: Any, number=None) -> str:
    """Keras's format_layer_shape: "(None, 3)" (rank 1 is "(None)"); several outputs as a list. ``number``
    formats each dimension (default: rich markup, as Keras colours numbers; ``str`` for plain text)."""
    number = number or _number
    if isinstance(shape, list):
        if len(shape) == 1:
            return _shape_markup(shape[0], number)
        return "[" + ", ".join(_shape_markup(s, number) for s in shape) + "]"
    return "(" + ", ".join(number(d) for d in shape) + ")"


def readable_size(size: float) -> str:
    """Keras's readable_memory_size: 976.00 B, 1.50 KB, ..."""
    for unit in ["B", "KB", "MB", "GB", "TB", "PB"]:
        if size / 1024 < 1:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} PB"


# ------------------------------------------------------------------ what the table shows
def _table_layers(model: Model) -> list[LayerSpec]:
    """Keras's rows: a Sequential's ``layers`` (no InputLayer), a Functional's every operation."""
    layers = model.spec.layers
    if model.spec.sequential and layers and layers[0].class_name == "InputLayer":
        return layers[1:]
    return layers


def _flat_refs(node: Node) -> list[TensorRef]:
    """A node's input tensors in Keras's order (tree.flatten sorts dict keys)."""
    if not node.kwargs and len(node.args) == 1 and type(node.args[0]) is TensorRef:  # the usual call
        return [node.args[0]]
    out: list[TensorRef] = []

    def walk(obj: Any) -> None:
        if isinstance(obj, TensorRef):
            out.append(obj)
        elif isinstance(obj, (list, tuple)):
            for item in obj:
                walk(item)
        elif isinstance(obj, dict):
            for key in sorted(obj):
                walk(obj[key])
    walk([node.args, node.kwargs])
    return out


def _sequential_like(model: Model) -> bool:
    """Keras's test: one node per depth, each reading at most one tensor, no layer called twice."""
    spec = model.spec
    if spec.sequential:
        return True
    if any(len(ls.nodes) > 1 for ls in spec.layers):
        return False
    if any(len(_flat_refs(n)) > 1 for ls in spec.layers for n in ls.nodes):
        return False
    # depth = longest path from a node to the outputs (keras/src/ops/function.py map_graph)
    nodes = {ls.name: ls.nodes for ls in spec.layers}
    depth: dict[str, int] = {}
    for name, _ in reversed([key for key in model.order if key[0] in nodes]):  # the file's layers (not nested ones')
        depth.setdefault(name, 0)
        for node in nodes[name]:
            for ref in _flat_refs(node):
                depth[ref.layer] = max(depth.get(ref.layer, 0), depth[name] + 1)
    return len(set(depth.values())) == len(depth)


def _connections(refs: list[TensorRef], number=_number) -> str:
    # Keras does not escape the inbound layer names here; neither do we.
    return ", ".join(f"{r.layer}[{number(r.node)}][{number(r.index)}]" for r in refs) or "-"


def _bytes_per_weight(config: dict) -> int:
    """Bytes per weight: the dtype policy's variable dtype (mixed_* policies keep float32 variables)."""
    dtype = config.get("dtype")
    if isinstance(dtype, dict):
        dtype = (dtype.get("config") or {}).get("name")
    if not isinstance(dtype, str) or dtype.startswith("mixed_"):
        return 4
    if dtype == "bfloat16":
        return 2
    try:
        return np.dtype(dtype).itemsize
    except TypeError:
        return 4


def _totals(model: Model) -> dict[str, tuple[int, float]]:
    """(count, bytes) of trainable and non-trainable weights; each layer counted once (nested models' too)."""
    t = n = 0
    tb = nb = 0.0
    for ls in model.leaves():
        info = model.info[ls.name]
        size = _bytes_per_weight(ls.config)
        t += info.trainable_params
        n += info.non_trainable_params
        tb += info.trainable_params * size
        nb += info.non_trainable_params * size
    return {"Total": (t + n, tb + nb), "Trainable": (t, tb), "Non-trainable": (n, nb)}


class _View:
    """The shapes and parameter counts of one model's layers: ``model``'s layers named ``prefix + name``."""

    def __init__(self, model: Model, prefix: str = ""):
        self.model, self.prefix = model, prefix

    def shape(self, ls: LayerSpec) -> Any:
        key = (self.prefix + ls.name, max(len(ls.nodes), 1) - 1)  # Keras shows the last call
        if key in self.model.shapes:
            return self.model.shapes[key]
        nested = self.prefix.rstrip("/")  # an inner InputLayer: the tensor the nested model's first call fed it
        fed = dict(zip([r.layer for r in self.model.expansion.origin[nested].model.inputs],
                       self.model.expansion.calls[nested][0]))[ls.name]
        shape = self.model.shapes[(fed.layer, fed.node)]
        return shape[fed.index] if isinstance(shape, list) else shape

    def params(self, ls: LayerSpec) -> int:
        info = self.model.info.get(self.prefix + ls.name)
        return 0 if info is None else info.params

    def inside(self, ls: LayerSpec) -> "_View":
        """The view of nested model ``ls``'s layers: its own graph when its inputs have shapes, as Keras builds it."""
        inner = ls.model
        if all(l.config.get("batch_shape") is not None for l in inner.layers if l.class_name == "InputLayer"):
            try:
                return _View(Model(without_weights(inner)))
            except KcompatError:
                pass
        return _View(self.model, f"{self.prefix}{ls.name}/")


class _Row:
    """One table row: its rich markup (as Keras writes it), or its plain text when that is what rich shows.
    ``refs``: the Connected-to tensors (None: no such column; [] shows "-")."""

    def __init__(self, label: str, class_name: str, shape: Any, params: int, refs: list | None):
        self.label, self.class_name, self.shape, self.params, self.refs = label, class_name, shape, f"{params:,}", refs

    def markup(self) -> list[str]:
        import rich.markup
        row = [rich.markup.escape(self.label) + f" ([color(33)]{rich.markup.escape(self.class_name)}[/])",
               _shape_markup(self.shape), _number(self.params)]
        return row if self.refs is None else row + [_connections(self.refs)]

    def plain(self) -> list[str] | None:
        """None when a name could read as markup (rich decides how such a row looks)."""
        names = [self.label, self.class_name, *(r.layer for r in self.refs or [])]
        if any("[" in name or "\\" in name for name in names):
            return None
        row = [f"{self.label} ({self.class_name})", _shape_markup(self.shape, str), self.params]
        return row if self.refs is None else row + [_connections(self.refs, str)]


def _rows(view: _View, layers: list[LayerSpec], expand: bool, with_connections: bool, level: int = 0) -> list[_Row]:
    """Keras's print_layer: a row per layer, and with ``expand`` a nested model's layers after it, indented."""
    rows = []
    prefix = "   " * level + "└ " if level else ""
    for ls in layers:
        refs = None if not with_connections else [r for n in ls.nodes for r in _flat_refs(n)] if level == 0 else []
        rows.append(_Row(prefix + ls.name, _keras_class(ls), view.shape(ls), view.params(ls), refs))
        if expand and ls.model is not None:
            rows += _rows(view.inside(ls), keras_layers(ls.model), expand, with_connections, level + 1)
    return rows


def _keras_class(ls: LayerSpec) -> str:
    """The class name Keras shows: a nested functional model is a ``Functional`` (Keras 2 wrote ``Model``)."""
    if ls.model is not None and not ls.model.sequential:
        return "Functional"
    return ls.class_name.rpartition(">")[2]


def summary_text(model: Model, line_length: int | None = None, width: int | None = None,
                 expand_nested: bool = False) -> str:
    """Exactly what Keras 3's ``model.summary()`` prints for this model (ending in a newline).

    ``width`` is the terminal width to render for (None: what rich and shutil find, as in
    Keras, e.g. from COLUMNS). ``expand_nested``: as Keras's ``summary(expand_nested=True)``.
    No "Optimizer params" line: a file's model is not compiled here.
    """
    import rich.console
    import rich.markup

    sequential_like = _sequential_like(model)
    if sequential_like:
        default_length, positions = 88, [0.45, 0.80, 1.0]
        header, justify = ["Layer (type)", "Output Shape", "Param #"], ["left", "left", "right"]
    else:
        default_length, positions = 108, [0.3, 0.56, 0.74, 1.0]
        header = ["Layer (type)", "Output Shape", "Param #", "Connected to"]
        justify = ["left", "left", "right", "left"]
    columns_available = width if width is not None else shutil.get_terminal_size().columns
    line_length = line_length or min(default_length, columns_available - 4)
    widths, current = [], 0
    for pos in positions:
        w = int(pos * line_length) - current
        if w < 4:
            raise KcompatError(f"line length too small for the summary table (a column would be {w} "
                               f"characters wide). Received: " + (f"line_length={line_length}" if width is None or
                                                                  line_length != columns_available - 4
                                                                  else f"width={width}"))
        widths.append(w)
        current += w
    columns = list(zip(header, justify, widths))  # (header, justify, width): fresh rich Columns per table
    rows = _rows(_View(model), _table_layers(model), expand_nested, not sequential_like)

    console = rich.console.Console(highlight=False, force_terminal=False, color_system=None, width=width)
    console.begin_capture()
    console.print(_bold(f'Model: "{rich.markup.escape(model.spec.name)}"'))
    text = ""
    if len(rows) <= FAST_ROWS:
        console.print(_table(columns, line_length, [row.markup() for row in rows]))
    else:
        text = console.end_capture() + "\n".join(_table_lines(console, columns, line_length, rows)) + "\n"
        console.begin_capture()
    for label, (count, size) in _totals(model).items():
        console.print(_bold(f" {label} params: ") + _number(f"{count:,}") + f" ({readable_size(size)})")
    return text + console.end_capture()


FAST_ROWS = 100  # a longer table's rows are laid out here, not by rich (~1 ms a row): the same characters
def _table(columns: list, line_length: int, rows: list, show_header: bool = True):
    import rich.table
    table = rich.table.Table(*[rich.table.Column(h, justify=j, width=w) for h, j, w in columns],
                             width=line_length, show_lines=True, show_header=show_header)
    for row in rows:
        table.add_row(*row)
    return table


def _render(console, table) -> list[str]:
    console.begin_capture()
    console.print(table)
    return console.end_capture().splitlines()


def _table_lines(console, columns: list, line_length: int, rows: list) -> list[str]:
    """The lines rich would print for the table, each row laid out from rich's own template: a two-row
    table rendered by rich gives the borders, the separator and each column's width; a row whose text fits
    its columns on one line (ASCII) is written directly, any other is rendered by rich alone."""
    probe = _render(console, _table(columns, line_length, [["x"] * len(columns), ["y"] * len(columns)]))
    top, template, separator, bottom = probe[:-4], probe[-4], probe[-3], probe[-1]
    bar = template[0]
    cuts = [i for i, ch in enumerate(template) if ch == bar]
    spans = [cuts[i + 1] - cuts[i] - 3 for i in range(len(cuts) - 1)]  # text width of each column

    def fast(plain: list[str]) -> str | None:
        cells = []
        for text, span, column in zip(plain, spans, columns):
            if len(text) > span or not text.isascii() or not text.isprintable() or text != text.strip():
                return None
            cells.append(text.rjust(span) if column[1] == "right" else text.ljust(span))
        return bar + bar.join(f" {c} " for c in cells) + bar

    if fast(["x"] * len(columns)) != template:  # rich changed its layout: let it render everything
        return _render(console, _table(columns, line_length, [row.markup() for row in rows]))
    lines = list(top)
    for i, row in enumerate(rows):
        plain = row.plain()
        line = None if plain is None else fast(plain)
        lines += [line] if line is not None else \
            _render(console, _table(columns, line_length, [row.markup()], show_header=False))[1:-1]
        lines.append(separator if i < len(rows) - 1 else bottom)
    return lines



# ------------------------------------------------------------------ JSON
def _json_shape(shape: Any) -> Any:
    if isinstance(shape, list):
        return [_json_shape(s) for s in shape]
    return [None if d is None else int(d) for d in shape]


def _json_layers(model: Model, spec: ModelSpec, prefix: str = "") -> list[dict]:
    out = []
    for ls in spec.layers:
        info = model.info.get(prefix + ls.name)
        if info is None:  # a nested model's InputLayer: it passes its call's tensor through
            continue
        entry = {"name": prefix + ls.name, "class_name": ls.class_name,
                 "output_shape": _json_shape(info.output_shape), "params": info.params}
        if ls.model is not None:
            entry["layers"] = _json_layers(model, ls.model, f"{prefix}{ls.name}/")
        out.append(entry)
    return out


def summary_json(model: Model) -> dict:
    """The summary as data: every layer (InputLayer included), output shape of its first call, params; a
    nested model's layers (named ``outer/inner``) under its own entry."""
    totals = _totals(model)
    return {
        "name": model.spec.name,
        "layers": _json_layers(model, model.spec),
        "total_params": totals["Total"][0],
        "trainable_params": totals["Trainable"][0],
        "non_trainable_params": totals["Non-trainable"][0],
    }


# ------------------------------------------------------------------ explained
def _words_shape(shape: Any) -> str:
    try:
        return fmt_shape(shape)
    except TypeError:
        return repr(shape)


def explain_text(model: Model, line_length: int | None = None, width: int | None = None) -> str:
    """The Keras summary table, then one line per layer saying why its shape and parameter count are what they are."""
    lines = [summary_text(model, line_length, width), "Why these shapes and counts:"]
    lines += _explain_lines(model, model.spec)
    totals = _totals(model)
    weighted = [(ls.name, model.info[ls.name].params) for ls in model.spec.layers if model.info[ls.name].params]
    count, size = totals["Total"]
    sum_words = " + ".join(f"{p:,} ({name})" for name, p in weighted) + " = " if 1 < len(weighted) <= 10 else ""
    lines.append(f" Total: {sum_words}{count:,} params, {readable_size(size)} of weights "
                 f"({totals['Trainable'][0]:,} trainable, {totals['Non-trainable'][0]:,} non-trainable)")
    return "\n".join(lines)


def _explain_lines(model: Model, spec: ModelSpec, prefix: str = "") -> list[str]:
    """One line per layer, a nested model's line followed by its layers' (``outer/inner``)."""
    lines = []
    for ls in spec.layers:
        name = prefix + ls.name
        if name not in model.info:  # a nested model's InputLayer
            continue
        layer, info = model.layers[name], model.info[name]
        calls = f"; called {len(model.specs[name].nodes)} times, weights shared" if len(model.specs[name].nodes) > 1 else ""
        if ls.model is not None:
            fed = [model.shapes[(r.layer, r.node)] for r in model.expansion.calls[name][0]]
            fed = [f[r.index] if isinstance(f, list) else f for f, r in zip(fed, model.expansion.calls[name][0])]
            shapes = f"{_words_shape(fed[0] if len(fed) == 1 else fed)} -> {_words_shape(info.output_shape)}"
            n = len(model.expansion.children[name])
            lines.append(f" {name} ({ls.class_name}): {shapes}; a nested model of {n} layer{'s' * (n != 1)}, listed "
                         f"below as '{name}/...'; {info.params:,} params, its layers' sum{calls}")
            lines += _explain_lines(model, ls.model, f"{name}/")
            continue
        shapes = _words_shape(info.output_shape)
        if info.input_shape is not None:
            shapes = f"{_words_shape(info.input_shape)} -> {shapes}"
        why = layer.explain(info.input_shape, info.output_shape)
        why = why.removeprefix(f"{shapes}; ")  # the default explain starts with the shapes already shown
        lines.append(f" {name} ({ls.class_name}): {shapes}; {why}{calls}")
    return lines

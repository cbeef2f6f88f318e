"""Templates: a bounded Jinja2 sandbox with StrictUndefined, every template compiled once.

Templates see ``lead`` (every lead column; ``lead.attributes.x`` for custom fields),
``account``, ``sequence``, ``message`` and ``now``. ``None`` renders as an empty string so
``{{ lead.first_name or lead.username }}`` reads naturally.

A typo in a column (``lead.frist_name``) is an error. A custom attribute is data: a lead
that lacks one is skipped with ``missing_attribute:<key>`` while the others are served
(nested: ``missing_attribute:address.city`` when it lacks ``address`` or its ``city``), and
a missing attribute is falsy, so ``{{ lead.attributes.product | default('our product') }}``,
``{{ lead.attributes.product or 'our product' }}`` and ``{% if lead.attributes.product %}``
guard it.

Nothing a template does can flood a person or the machine: every string, list or printed
value it builds is at most ``MAX_CHARS`` characters (``'a' * 10**9`` is refused before it is
built), ``range`` gives at most ``MAX_ITEMS`` numbers, a rendering takes at most ``MAX_STEPS``
loop steps and calls, and ``{{ lead }}`` or ``{{ account }}`` never print a whole record.
The channel's own limit (Instagram: 1000 UTF-8 bytes) is checked on the result
(``too_long``).

The package: ``renderer`` (``Renderer``: compile once, render per lead), ``sandbox`` (the
bounded Jinja2 environment), ``limits`` (the bounds and the checks that enforce them),
``fields`` (what templates see: records, attributes, the context), ``errors`` and
``sample`` (the sample lead ``sequences check`` renders against).
"""

from .errors import MissingAttribute, TemplateLimit, TemplateProblem
from .fields import Attributes, Record, attribute_names, template_context, with_attribute
from .limits import MAX_CHARS, MAX_ITEMS, MAX_POWER_BITS, MAX_STEPS
from .renderer import Rendered, Renderer
from .sample import sample_lead
from .sandbox import BoundedSandbox, make_env, render_bounded

__all__ = [
    "MAX_CHARS",
    "MAX_ITEMS",
    "MAX_POWER_BITS",
    "MAX_STEPS",
    "Attributes",
    "BoundedSandbox",
    "MissingAttribute",
    "Record",
    "Rendered",
    "Renderer",
    "TemplateLimit",
    "TemplateProblem",
    "attribute_names",
    "make_env",
    "render_bounded",
    "sample_lead",
    "template_context",
    "with_attribute",
]

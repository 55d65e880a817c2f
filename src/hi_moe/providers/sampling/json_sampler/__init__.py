"""Sample a JSON value that satisfies a JSON Schema: how `MockProvider` answers JSON requests.

`sample_json` reads the schema (drafts 2020-12, 7, 6 and 4; 2019-09 without `$recursiveRef`),
draws candidates that read like data (short words, small numbers, few optional properties,
values near the minimum sizes) and hands each to the caller's `accept`, the authority on
validity, until one passes.

How a candidate is drawn:

- The schema is flattened into a conjunction: `allOf` and `$ref`/`$dynamicRef` (local JSON
  pointers, `$id`s, `$anchor`s and `$dynamicAnchor`s of the document) are followed, and
  `anyOf`, `oneOf` (the other branches then must fail) and `if`/`then`/`else` are choice points
  explored depth first, in an order drawn from the random generator.
- The keywords of the conjunction are merged (types intersected, bounds tightened, `enum` and
  `const` intersected) and a value of an allowed type is built from them, recursing into
  properties and items. Strings come from `format` generators, from a generator walking the
  parse tree of `pattern`, or from a word list.
- Every value built is checked against its whole subschema by a small validator of our own,
  which answers yes, no or "cannot tell"; only its "no" is trusted. It steers the search, and
  `accept` has the last word.

Nothing is claimed unsatisfiable without a proof: the `false` schema, bounds that contradict
each other, required properties the schema forbids, an `enum` none of whose values passes,
and similar, found on paths where every alternative was tried. Anything else that finds no
value is `CannotSample`.

Where each part lives: `driver` (`sample_json`, and `_Run`, one call's state), `refs`
(the index and `$ref` resolution), `generate` (choice points and generation by kind), `merge`
(merged keywords and their contradictions), `numbers`, `strings` (with `formats`), `patterns`
(with `ecma` and `regex_gen`), `arrays`, `objects` and `checker` (the validator). Each part is a
mixin of `_Run` over the shared state in `_base`; `_common` holds the exceptions and helpers.
"""

from __future__ import annotations

from hi_moe.providers.sampling.json_sampler._common import CannotSample, Unsatisfiable
from hi_moe.providers.sampling.json_sampler.driver import sample_json

__all__ = ["CannotSample", "Unsatisfiable", "sample_json"]

"""The words of technicians' notes: components, materials, conditions, phrases, sentence shapes.

Materials and conditions are split into what the regulation allows and what it does not
(DESIGN.md: plastic or iron, fair or poor condition, are out of compliance). Each surface
form belongs to one side: "worn", "so-so" and "average" are fair; "cracked", "seized" and
"worn out" are poor; "ok", "fine" and "serviceable" are good; nylon, polypropylene and HDPE
are plastics; ductile and grey iron are iron.

Sentence shapes are split in two: training sees only `TRAIN_SHAPES`; `HELDOUT_SHAPES` are
kept for testing, so a model is measured on phrasings it never saw.
"""

from __future__ import annotations

# Canonical component name (the message's `component` field) -> ways technicians write it.
COMPONENTS: dict[str, tuple[str, ...]] = {
    "brake caliper": ("brake caliper", "brk caliper", "caliper", "front brake caliper"),
    "alternator": ("alternator", "alt.", "alternator unit"),
    "starter motor": ("starter motor", "starter", "strtr motor"),
    "water pump": ("water pump", "coolant pump", "wtr pump"),
    "fuel pump": ("fuel pump", "fuel pmp", "in-tank fuel pump"),
    "radiator": ("radiator", "rad", "radiator core"),
    "exhaust manifold": ("exhaust manifold", "exh. manifold", "exhaust mnfld"),
    "control arm": ("control arm", "lower control arm", "ctrl arm", "wishbone"),
    "wheel hub": ("wheel hub", "hub assembly", "hub assy"),
    "engine mount": ("engine mount", "eng. mount", "motor mount"),
    "steering rack": ("steering rack", "steering rack assy", "str rack"),
    "oil pan": ("oil pan", "sump", "oil sump"),
    "seat frame": ("seat frame", "driver seat frame"),
    "door hinge": ("door hinge", "hinge", "rear door hinge"),
    "bumper bracket": ("bumper bracket", "bumper mount", "bmpr bracket"),
    "fuel tank": ("fuel tank", "gas tank", "tank"),
    "intake manifold": ("intake manifold", "intake mnfld"),
    "drive shaft": ("drive shaft", "driveshaft", "prop shaft"),
    "battery tray": ("battery tray", "batt tray"),
    "heat shield": ("heat shield", "heatshield"),
    "coil spring": ("coil spring", "suspension spring", "spring"),
    "wheel rim": ("wheel rim", "rim", "alloy wheel rim"),
}

# Material -> surface forms. Non-compliant materials: plastic and iron (any kind).
GOOD_MATERIALS: tuple[str, ...] = (
    "steel", "stainless steel", "stainless", "galvanised steel", "galvanized steel",
    "forged steel", "aluminium", "aluminum", "alu", "alum.", "aluminium alloy", "titanium",
    "carbon fibre", "carbon fiber", "cfrp", "copper", "brass", "bronze", "magnesium",
    "magnesium alloy", "rubber", "reinforced rubber", "ceramic", "pressed steel",
    "spring steel", "cast aluminium", "chromoly", "aluminised steel",
)  # fmt: skip
BAD_MATERIALS: tuple[str, ...] = (
    "plastic", "abs plastic", "hard plastic", "moulded plastic", "molded plastic",
    "plastic composite", "iron", "cast iron", "cast-iron", "wrought iron", "ductile iron",
    "grey iron", "gray iron", "nylon", "polypropylene", "hdpe plastic", "pvc",
    "glass-filled nylon", "thermoplastic",
)  # fmt: skip
# Materials a note may say a component is *not* made of ("no plastic parts").
NEGATABLE_MATERIALS: tuple[str, ...] = ("plastic", "iron", "cast iron", "nylon")
# Sub-parts of a component in another material ("steel housing w/ plastic clips").
SUB_PARTS: tuple[str, ...] = (
    "clips", "bushings", "impeller", "end tanks", "pulley", "brackets", "cover", "bolts",
    "cap", "trim", "yokes", "sleeve", "liner", "mounting tabs", "seals",
)  # fmt: skip
BODY_WORDS: tuple[str, ...] = ("housing", "body", "case", "core", "frame", "shell")

# Condition words. Non-compliant conditions: fair and poor.
GOOD_CONDITIONS: tuple[str, ...] = (
    "good", "very good", "excellent", "exc.", "like new", "like-new", "new", "as-new",
    "mint", "great", "gd", "ok", "okay", "fine", "serviceable", "sound", "v good",
    "brand new",
)  # fmt: skip
BAD_CONDITIONS: tuple[str, ...] = (
    "fair", "poor", "very poor", "v. poor", "only fair", "fair to poor", "rather poor",
    "fair-ish", "worn", "so-so", "average", "bad", "worn out", "badly worn",
    "badly corroded", "heavily corroded", "cracked", "seized", "unserviceable",
    "needs replacing",
)  # fmt: skip

YEAR_PHRASES: tuple[str, ...] = (
    "manufactured in {y}", "manufactured {y}", "mfd {y}", "mfd. {y}", "mfg {y}", "mfg. {y}",
    "mfr date {y}", "built in {y}", "built {y}", "made in {y}", "produced in {y}",
    "production year {y}", "prod. yr {y}", "yr {y}", "yr: {y}", "year {y}", "year: {y}",
    "dated {y}", "dating from {y}", "from {y}", "circa {y}", "ca. {y}", "c. {y}",
    "approx. {y}", "approx {y}", "manufactured approx. {y}", "made around {y}",
    "manufactured around {y}", "{y} build", "{y}-built", "built circa {y}",
    "date of manufacture {y}", "dom {y}", "MY{y}", "model year {y}", "manuf. {y}",
    "mnf {y}",
)  # fmt: skip
# Year phrases whose word says "manufacture year" plainly enough that a bare two-digit year
# still reads as one ("mfd 94", "yr 97", "MY94"); "from 94" or "approx 94" would not.
_LOOSE_CUES = ("approx", "around", "circa", "ca.", "c.", "from", "dat", "produced", "mfr")
CUED_YEAR_PHRASES: tuple[str, ...] = tuple(
    p for p in YEAR_PHRASES if not p.startswith("{y}") and not any(w in p for w in _LOOSE_CUES)
)
CONDITION_PHRASES: tuple[str, ...] = (
    "in {c} condition", "{c} condition", "condition {c}", "condition: {c}", "cond. {c}",
    "cond {c}", "cond: {c}", "{c} cond.", "{c} cond", "rated {c}", "condition rated {c}",
    "state: {c}", "in {c} shape", "{c} overall", "overall {c}", "looks {c}",
    "assessed as {c}",
)  # fmt: skip
MATERIAL_PHRASES: tuple[str, ...] = (
    "{m}", "made of {m}", "made from {m}", "{m} construction", "material: {m}",
    "material {m}", "mat. {m}", "mat: {m}", "constructed of {m}", "{m} body",
    "built from {m}", "all {m}", "{m} housing", "solid {m}",
)  # fmt: skip
COMPONENT_PHRASES: tuple[str, ...] = ("{p}", "{p}", "{p}", "the {p}", "{p} unit", "{p} part")

# Slots: {P}/{Y}/{C}/{M} are phrases (component, year, condition, material), {p}/{y}/{c}/{m}
# the bare values. A shape without a condition or material slot leaves that fact unstated.
TRAIN_SHAPES: tuple[str, ...] = (
    "{M} {p} {Y} {C}.",
    "{P}: {m}, {Y}, {C}.",
    "{P} - {M} - {Y} - {C}",
    "{P}. {M}. {Y}. {C}.",
    "{Y} {m} {p}, {C}.",
    "{y} {m} {p} {C}",
    "{p} / {m} / {y} / {c}",
    "{p} ({m}), {Y}, {C}",
    "Checked {p}: {C}, {M}, {Y}.",
    "Inspected the {p}, {Y}, {M}, {C}.",
    "{p} {Y}. Material {m}. {C}.",
    "{C} {p} of {m}, {Y}.",
    "{p} made of {m}, {Y}, currently {c}.",
    "{m} {p}, {C}; {Y}",
    "{P} is {m} and {C}, {Y}.",
    "Found {P} {M} {Y}, {C}.",
    "{p}: {C}. {Y}. {M}.",
    "{Y}, {M}, {C} - {p}",
    "{c} {m} {p} ({y})",
    "{p} [{m}] [{y}] [{c}]",
    "Removed {p} for inspection - {M}, {Y}, {C}.",
    "Tech note: {p} - {m} - {C} - {Y}",
    "{P} appears {c}; {Y}; {M}",
    "The {p} is {m}, {Y}, {C}.",
    "{y} {p}, {m}, {c}",
    "{p} {m} {y} {c}",
    "{p}, {m}, {y}",
    "{M} {p}, {Y}.",
    "{p} {Y}, {C}.",
    "{P} {C}, {Y}",
    "{p} {m} {Y} {c}, {x}",
    "{x}. {p}: {m}, {y}, {c}",
    "{p}. {m}. {Y}. {c}. {x}.",
    "{P} - {c} - {m} - {Y}",
    "{p} {Y} {m}",
    "{p} {m}, {c}. {Y}",
)
HELDOUT_SHAPES: tuple[str, ...] = (
    "Component: {p} | Material: {m} | Year: {y} | Condition: {c}",
    "{C}. {Y}. {M}. That was the {p}.",
    "Customer asked about the {p}; it is {m}, {C}, {Y}.",
    "{y}; {c}; {m}; {p}",
    "Looked at {p} - {m}, {c}, {Y}",
    "Note: {Y} {p} ({m}), {C}",
    "{M}, {C} {p}, {Y}.",
    "On lift: {p}. {Y} part, {m}, {c}.",
    "{p} => {m} / {Y} / {C}",
    "{Y} and {C}: {M} {p}",
    "{P}: {Y}; {M}.",
    "{x} - {p} ({m}) {Y}, {c}",
    "{p}, {Y}, {m}, {c}. {x}",
    "{c}: {p} {m} {Y}",
)

# Unrelated phrases: mileage, codes and dates that are not the manufacture year, chatter.
DISTRACTORS: tuple[str, ...] = (
    "odometer {km} km", "{km} km on the clock", "mileage {mi} mi", "customer reports a rattle",
    "no leaks found", "torque checked to {nm} Nm", "bay {bay}", "work order WO-{wo}",
    "ref #{ref}", "ref {ref}", "inspected {iy}", "last serviced {iy}", "last service in {iy}",
    "next check in {mo} months", "photos attached", "tech {initials}", "approx {h} h labour",
    "part no. {pn}", "owner informed", "parts on order", "cleaned and lubricated",
    "recheck at next visit", "re-torqued bolts", "ambient {temp} C",
)  # fmt: skip
# More of them in the notes people type in a hurry.
MESSY_DISTRACTORS: tuple[str, ...] = (
    "inspected {day:02d}/{month:02d}/{iy}", "checked on {iy}-{month:02d}-{day:02d}",
    "PN {code}-{small}", "job {code}-{small}", "invoice #{code}", "odo {short}k",
    "tyre pressure {psi} psi", "battery {volts} V", "customer waiting in lobby",
    "will call owner tomorrow", "parts ordered from supplier", "loaner car given",
    "road test done", "coffee machine broken again", "no rust", "no cracks", "no play",
    "pics in job folder", "see previous invoice", "wo {code}", "rebuilt {iy}",
    "replaced {iy} under warranty", "fitted {iy}", "date code {iy}",
    "vibration at {speed} mph", "road test at {speed} km/h", "ABS sensor replaced",
    "ABS light on, sensor cleaned", "{other} {wear}, {fix}", "{other} {wear} ({aside})",
    "{other} ({bad}) {aside}", "{other} replaced",
)  # fmt: skip
# Other parts a note may mention on the side: their wear or material is not the component's.
OTHER_PARTS: tuple[str, ...] = (
    "wiper blades", "cabin filter housing", "bleed nipple", "ABS sensor", "heat wrap",
    "brake pads", "tyre valve", "hose clamp", "trim panel", "wheel nut", "bulb", "sensor plug",
    "engine cover", "splash guard", "air filter box", "dust boot", "fuse", "washer jet",
)  # fmt: skip
OTHER_WEAR: tuple[str, ...] = ("worn", "cracked", "seized", "split", "broken", "corroded")
OTHER_FIXES: tuple[str, ...] = ("replaced", "freed", "fixed", "cleaned", "refitted", "to quote")
ASIDES: tuple[str, ...] = (
    "not this part", "separate job", "quoted separately", "noted for customer", "other side",
)  # fmt: skip

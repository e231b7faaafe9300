"""The Unicode class names Go's regexp accepts in ``\\p{NAME}`` (Go 1.25 and later, which
builds cloudflared 2026.x): ``regexp/syntax`` ``unicodeTable`` looks a name up after
``canonicalName`` (first letter upper case, the rest lower case, ``_``/``-``/space dropped) in
package unicode's ``Categories``, ``Scripts`` and ``CategoryAliases``, plus ``Any``,
``Assigned``, ``ASCII`` and ``LC``. So ``\\p{greek}``, ``\\p{Letter}``, ``\\p{lowercase letter}``
and ``\\p{Lc}`` are accepted, and a script whose name has two words (``\\p{Old_Italic}``,
``\\p{SignWriting}``) is refused: its canonical form is no key. RE2 (google-re2, the checker
here) differs both ways, so names are decided here and rewritten for RE2. Unicode 15.0
tables (Go's since 1.21). Pure data and one lookup; no I/O.
"""

from __future__ import annotations

CATEGORIES = ("C", "Cc", "Cf", "Cn", "Co", "Cs", "L", "Ll", "Lm", "Lo", "Lt", "Lu", "M", "Mc", "Me", "Mn", "N",
              "Nd", "Nl", "No", "P", "Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps", "S", "Sc", "Sk", "Sm", "So", "Z",
              "Zl", "Zp", "Zs")
SCRIPTS = (
    "Adlam Ahom Anatolian_Hieroglyphs Arabic Armenian Avestan Balinese Bamum Bassa_Vah Batak Bengali Bhaiksuki "
    "Bopomofo Brahmi Braille Buginese Buhid Canadian_Aboriginal Carian Caucasian_Albanian Chakma Cham Cherokee "
    "Chorasmian Common Coptic Cuneiform Cypriot Cypro_Minoan Cyrillic Deseret Devanagari Dives_Akuru Dogra "
    "Duployan Egyptian_Hieroglyphs Elbasan Elymaic Ethiopic Georgian Glagolitic Gothic Grantha Greek Gujarati "
    "Gunjala_Gondi Gurmukhi Han Hangul Hanifi_Rohingya Hanunoo Hatran Hebrew Hiragana Imperial_Aramaic Inherited "
    "Inscriptional_Pahlavi Inscriptional_Parthian Javanese Kaithi Kannada Katakana Kawi Kayah_Li Kharoshthi "
    "Khitan_Small_Script Khmer Khojki Khudawadi Lao Latin Lepcha Limbu Linear_A Linear_B Lisu Lycian Lydian "
    "Mahajani Makasar Malayalam Mandaic Manichaean Marchen Masaram_Gondi Medefaidrin Meetei_Mayek Mende_Kikakui "
    "Meroitic_Cursive Meroitic_Hieroglyphs Miao Modi Mongolian Mro Multani Myanmar Nabataean Nag_Mundari "
    "Nandinagari New_Tai_Lue Newa Nko Nushu Nyiakeng_Puachue_Hmong Ogham Ol_Chiki Old_Hungarian Old_Italic "
    "Old_North_Arabian Old_Permic Old_Persian Old_Sogdian Old_South_Arabian Old_Turkic Old_Uyghur Oriya Osage "
    "Osmanya Pahawh_Hmong Palmyrene Pau_Cin_Hau Phags_Pa Phoenician Psalter_Pahlavi Rejang Runic Samaritan "
    "Saurashtra Sharada Shavian Siddham SignWriting Sinhala Sogdian Sora_Sompeng Soyombo Sundanese Syloti_Nagri "
    "Syriac Tagalog Tagbanwa Tai_Le Tai_Tham Tai_Viet Takri Tamil Tangsa Tangut Telugu Thaana Thai Tibetan "
    "Tifinagh Tirhuta Toto Ugaritic Vai Vithkuqi Wancho Warang_Citi Yezidi Yi Zanabazar_Square").split()
# unicode.CategoryAliases (PropertyValueAliases.txt, gc): long name -> category
ALIASES = {
    "Cased_Letter": "LC", "Close_Punctuation": "Pe", "Combining_Mark": "M", "Connector_Punctuation": "Pc",
    "Control": "Cc", "Currency_Symbol": "Sc", "Dash_Punctuation": "Pd", "Decimal_Number": "Nd",
    "Enclosing_Mark": "Me", "Final_Punctuation": "Pf", "Format": "Cf", "Initial_Punctuation": "Pi",
    "Letter": "L", "Letter_Number": "Nl", "Line_Separator": "Zl", "Lowercase_Letter": "Ll", "Mark": "M",
    "Math_Symbol": "Sm", "Modifier_Letter": "Lm", "Modifier_Symbol": "Sk", "Nonspacing_Mark": "Mn",
    "Number": "N", "Open_Punctuation": "Ps", "Other": "C", "Other_Letter": "Lo", "Other_Number": "No",
    "Other_Punctuation": "Po", "Other_Symbol": "So", "Paragraph_Separator": "Zp", "Private_Use": "Co",
    "Punctuation": "P", "Separator": "Z", "Space_Separator": "Zs", "Spacing_Mark": "Mc", "Surrogate": "Cs",
    "Symbol": "S", "Titlecase_Letter": "Lt", "Unassigned": "Cn", "Uppercase_Letter": "Lu", "cntrl": "Cc",
    "digit": "Nd", "punct": "P",
}


def canonical(name: str) -> str:
    """Go's canonicalName: the first letter upper case, the others lower case, '_', '-' and
    ' ' dropped (only ASCII letters change case)."""
    out: list[str] = []
    first = True
    for ch in name:
        if ch in "_- ":
            continue
        if first:
            out.append(ch.upper() if "a" <= ch <= "z" else ch)
            first = False
        else:
            out.append(ch.lower() if "A" <= ch <= "Z" else ch)
    return "".join(out)


_CATEGORIES = {**{c: c for c in CATEGORIES}, "Lc": "LC"}  # the keys are canonical already, but LC
_SCRIPTS = frozenset(SCRIPTS)
_ALIASES = {canonical(k): v for k, v in ALIASES.items()}


def lookup(name: str) -> str | None:
    """What Go's ``\\p{name}`` stands for: "Any", "Assigned", "ASCII", a category ("Lu",
    "LC") or a script ("Greek"); None when Go refuses the name."""
    key = canonical(name)
    if key in ("Any", "Assigned"):
        return key
    if key == "Ascii":
        return "ASCII"
    if key in _CATEGORIES:
        return _CATEGORIES[key]
    if key in _SCRIPTS:
        return key  # a script key found as is: one word, first letter upper case
    return _ALIASES.get(key)

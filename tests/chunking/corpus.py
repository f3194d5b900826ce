"""Chunker test corpus: texts, the spans a chunk boundary must never touch, and expected chunks.

Each `Case` has
- `id`: a unique name (used as the pytest id),
- `text`: the whole LLM reply,
- `protected`: substrings that must never contain a chunk boundary (strictly inside) and,
  when the substring ends with a period (an abbreviation, an initial or a list marker),
  must not be directly followed by one either. Every occurrence in `text` is protected.
  Whitespace cuts made by `words`, `passthrough`, `deadline` and `max_chars` are allowed
  inside spans that contain whitespace (they only must not split a word).
- `sentence`: the expected `raw` chunk list under the `sentence` strategy (None = not
  asserted). These are independent of how the text is streamed.
- `clause`: the expected `raw` chunk list under `clause` with the default min_chars=24.
- `sentence_text`: the expected cleaned `text` of each sentence chunk (TTS input).
- `silent`: every chunk of every strategy must have `text == ""` (nothing to speak).

Rules (DESIGN.md "Chunker" and the chunker brief): strong boundaries `. ! ? … ...` and a
newline after text; weak `, ; : — –`; the cut goes right after the boundary plus any closing
quotes/brackets; whitespace between chunks starts the next chunk; trailing whitespace is
dropped; `"".join(raws) == text.rstrip()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Case:
    id: str
    text: str
    protected: tuple[str, ...] = ()
    sentence: tuple[str, ...] | None = None
    clause: tuple[str, ...] | None = None
    sentence_text: tuple[str, ...] | None = None
    silent: bool = False
    tags: tuple[str, ...] = field(default=())


def C(id, text, protected=(), sentence=None, clause=None, sentence_text=None, silent=False, tags=()):
    return Case(
        id=id,
        text=text,
        protected=tuple(protected),
        sentence=None if sentence is None else tuple(sentence),
        clause=None if clause is None else tuple(clause),
        sentence_text=None if sentence_text is None else tuple(sentence_text),
        silent=silent,
        tags=tuple(tags),
    )


def _long_priced_list(n: int) -> tuple[str, list[str]]:
    """A long reply of n sentences, each with a decimal price: 'Item 7 costs $7.99 today.'"""
    parts = [("" if i == 0 else " ") + f"Item {i} costs ${i}.99 today." for i in range(n)]
    return "".join(parts), parts


_LONG_TEXT, _LONG_PARTS = _long_priced_list(120)  # ~3,000 characters, 120 sentences

_WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
    "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu"
).split()


def _unpunctuated(n_chars: int) -> str:
    out, i = [], 0
    while len(" ".join(out)) < n_chars:
        out.append(_WORDS[i % len(_WORDS)])
        i += 1
    return " ".join(out)


# 2,000+ characters with no punctuation at all (the seed's run-on reply, much longer)
LONG_UNPUNCTUATED = _unpunctuated(2000)

SEED_TURN4 = (
    "You filled out a Facebook ad about creating passive income without adding more hours "
    "to your day—that's how we got your info."
)


CASES: list[Case] = [
    # ---------------------------------------------------------------- abbreviations
    C("abbr_dr", "Dr. Smith will see you now. Please wait.", ["Dr."],
      sentence=["Dr. Smith will see you now.", " Please wait."]),
    C("abbr_mr", "Mr. Jones called again. He left a message.", ["Mr."],
      sentence=["Mr. Jones called again.", " He left a message."]),
    C("abbr_mrs", "Mrs. Lee is in room four. She is expecting you.", ["Mrs."],
      sentence=["Mrs. Lee is in room four.", " She is expecting you."]),
    C("abbr_ms", "Ms. Patel sent the forms today. Check your inbox.", ["Ms."],
      sentence=["Ms. Patel sent the forms today.", " Check your inbox."]),
    C("abbr_st", "The shop on St. Mark's Place opens at nine. Come early.", ["St."],
      sentence=["The shop on St. Mark's Place opens at nine.", " Come early."]),
    C("abbr_st_lower", "Meet me at Fifth St. and Main tonight.", ["St."],
      sentence=["Meet me at Fifth St. and Main tonight."]),
    C("abbr_eg", "Bring something warm, e.g. a jacket or a sweater. It gets cold.", ["e.g."],
      sentence=["Bring something warm, e.g. a jacket or a sweater.", " It gets cold."],
      clause=["Bring something warm, e.g. a jacket or a sweater.", " It gets cold."]),
    C("abbr_ie", "Use the short form, i.e. the one on page two. Then sign it.", ["i.e."],
      sentence=["Use the short form, i.e. the one on page two.", " Then sign it."]),
    C("abbr_etc", "We sell apples, pears, plums, etc. at the market. Come by.", ["etc."],
      sentence=["We sell apples, pears, plums, etc. at the market.", " Come by."],
      clause=["We sell apples, pears, plums,", " etc. at the market.", " Come by."]),
    C("abbr_etc_end", "Bring pens, paper, etc.", ["etc."], sentence=["Bring pens, paper, etc."]),
    C("abbr_vs", "It was Lakers vs. Celtics last night. The Celtics won.", ["vs."],
      sentence=["It was Lakers vs. Celtics last night.", " The Celtics won."]),
    C("abbr_us", "She moved to the U.S. last year. She loves it.", ["U.S."],
      sentence=["She moved to the U.S. last year.", " She loves it."]),
    C("abbr_us_end", "She lives in the U.S.", ["U.S."], sentence=["She lives in the U.S."]),
    C("abbr_am", "The store opens at 9 a.m. every day. Do not be late.", ["a.m."],
      sentence=["The store opens at 9 a.m. every day.", " Do not be late."]),
    C("abbr_pm", "Your appointment is at 4:30 p.m. on Friday. See you then.", ["4:30", "p.m."],
      sentence=["Your appointment is at 4:30 p.m. on Friday.", " See you then."]),
    C("abbr_am_end", "Call me at 8 a.m.", ["a.m."], sentence=["Call me at 8 a.m."]),
    C("abbr_inc", "Acme Inc. reported strong sales. Shares rose.", ["Inc."],
      sentence=["Acme Inc. reported strong sales.", " Shares rose."]),
    C("abbr_ltd", "Widgets Ltd. was founded in 1990. It makes widgets.", ["Ltd."],
      sentence=["Widgets Ltd. was founded in 1990.", " It makes widgets."]),
    C("abbr_jr", "Martin Luther King Jr. gave that speech. It was in 1963.", ["Jr."],
      sentence=["Martin Luther King Jr. gave that speech.", " It was in 1963."]),
    C("abbr_sr", "John Smith Sr. owns the farm. His son runs it.", ["Sr."],
      sentence=["John Smith Sr. owns the farm.", " His son runs it."]),
    C("abbr_prof", "Prof. Adams teaches physics. Her classes are full.", ["Prof."],
      sentence=["Prof. Adams teaches physics.", " Her classes are full."]),
    C("abbr_no_number", "Order No. 5 has shipped. It arrives Monday.", ["No. 5"],
      sentence=["Order No. 5 has shipped.", " It arrives Monday."]),
    C("abbr_no_number_clause", "The package that you ordered, No. 12, has finally shipped.", ["No. 12"],
      clause=["The package that you ordered,", " No. 12, has finally shipped."]),
    C("no_is_a_word", "No. I do not think so.",
      sentence=["No.", " I do not think so."], clause=["No.", " I do not think so."]),
    C("abbr_many", "Dr. Brown and Mrs. Green met Mr. White at St. Luke's. They talked.",
      ["Dr.", "Mrs.", "Mr.", "St."],
      sentence=["Dr. Brown and Mrs. Green met Mr. White at St. Luke's.", " They talked."]),
    # ---------------------------------------------------------------- initials
    C("initials_tolkien", "J. R. R. Tolkien wrote The Hobbit. It is a classic.", ["J.", "R."],
      sentence=["J. R. R. Tolkien wrote The Hobbit.", " It is a classic."]),
    C("initials_bush", "George W. Bush was president. He served two terms.", ["W."],
      sentence=["George W. Bush was president.", " He served two terms."]),
    C("initials_white", "The author is E. B. White, who wrote Charlotte's Web.", ["E.", "B."],
      sentence=["The author is E. B. White, who wrote Charlotte's Web."],
      clause=["The author is E. B. White,", " who wrote Charlotte's Web."]),
    C("initials_rowling", "I met J. K. Rowling once. She was kind.", ["J.", "K."],
      sentence=["I met J. K. Rowling once.", " She was kind."]),
    # ---------------------------------------------------------------- decimals and numbers
    C("decimal", "The rate is 3.5 percent this year. It was 2.75 last year.", ["3.5", "2.75"],
      sentence=["The rate is 3.5 percent this year.", " It was 2.75 last year."]),
    C("decimal_end_of_sentence", "Inflation hit 3.2. Prices rose.", ["3.2"],
      sentence=["Inflation hit 3.2.", " Prices rose."]),
    C("money", "It costs $1,000.50 plus tax. That is the final price.", ["$1,000.50"],
      sentence=["It costs $1,000.50 plus tax.", " That is the final price."]),
    C("money_clause", "With shipping and handling included, the total comes to $12,345.67 today.",
      ["$12,345.67"],
      clause=["With shipping and handling included,", " the total comes to $12,345.67 today."]),
    C("euro_accents", "Café crème costs €3.50 in Zürich. Très bien.", ["€3.50"],
      sentence=["Café crème costs €3.50 in Zürich.", " Très bien."]),
    C("time", "Meet me at 12:30 tomorrow. Bring the report.", ["12:30"],
      sentence=["Meet me at 12:30 tomorrow.", " Bring the report."]),
    C("time_clause", "The meeting with the whole team starts at 12:30 sharp, so hurry.", ["12:30"],
      clause=["The meeting with the whole team starts at 12:30 sharp,", " so hurry."]),
    C("range_endash", "The long survey covered the years 1990–2000 in great detail.", ["1990–2000"],
      sentence=["The long survey covered the years 1990–2000 in great detail."],
      clause=["The long survey covered the years 1990–2000 in great detail."]),
    C("million", "The metropolitan area now has 1,000,000 residents. Wow.", ["1,000,000"],
      sentence=["The metropolitan area now has 1,000,000 residents.", " Wow."],
      clause=["The metropolitan area now has 1,000,000 residents.", " Wow."]),
    C("version", "Version 2.0.1 is out now. Please update.", ["2.0.1"],
      sentence=["Version 2.0.1 is out now.", " Please update."]),
    C("number_sentence_end", "The answer is 42. Next question.",
      sentence=["The answer is 42.", " Next question."]),
    C("number_text_end", "The total is 7.", sentence=["The total is 7."]),
    # ---------------------------------------------------------------- URLs, e-mail, domains
    C("url_query", "See https://example.com/a.b?x=1 for details. Thanks.",
      ["https://example.com/a.b?x=1"],
      sentence=["See https://example.com/a.b?x=1 for details.", " Thanks."]),
    C("url_fragment", "Open https://example.com/path?a=1&b=2#top and scroll. Done.",
      ["https://example.com/path?a=1&b=2#top"],
      sentence=["Open https://example.com/path?a=1&b=2#top and scroll.", " Done."]),
    C("url_www", "Go to www.example.org today. It has everything.", ["www.example.org"],
      sentence=["Go to www.example.org today.", " It has everything."]),
    C("url_sentence_end", "The docs are at https://docs.python.org/3/library/re.html. Read them.",
      ["https://docs.python.org/3/library/re.html"],
      sentence=["The docs are at https://docs.python.org/3/library/re.html.", " Read them."]),
    C("url_clause", "For the full list of options, visit https://example.com/docs/v1.2/index.html, then come back.",
      ["https://example.com/docs/v1.2/index.html"],
      clause=["For the full list of options,", " visit https://example.com/docs/v1.2/index.html,",
              " then come back."]),
    C("email", "Write to jane.doe@example.com with questions. We reply fast.", ["jane.doe@example.com"],
      sentence=["Write to jane.doe@example.com with questions.", " We reply fast."]),
    C("email_end", "My address is bob.smith@mail.example.co.uk. Write anytime.",
      ["bob.smith@mail.example.co.uk"],
      sentence=["My address is bob.smith@mail.example.co.uk.", " Write anytime."]),
    C("email_clause", "If you have any questions at all, email support@acme.io, and we will help.",
      ["support@acme.io"],
      clause=["If you have any questions at all,", " email support@acme.io, and we will help."]),
    C("domain", "Visit example.com for more. It is free.", ["example.com"],
      sentence=["Visit example.com for more.", " It is free."]),
    C("domain_end", "We moved to acme.co.uk. Update your bookmarks.", ["acme.co.uk"],
      sentence=["We moved to acme.co.uk.", " Update your bookmarks."]),
    C("filename", "Open the file report.pdf now. It has the numbers.", ["report.pdf"],
      sentence=["Open the file report.pdf now.", " It has the numbers."]),
    # ---------------------------------------------------------------- list markers
    C("list_steps", "Here are the steps:\n1. Open the app.\n2. Tap Login.\n3. Enter your code.",
      ["1.", "2.", "3."],
      sentence=["Here are the steps:", "\n1. Open the app.", "\n2. Tap Login.", "\n3. Enter your code."],
      clause=["Here are the steps:", "\n1. Open the app.", "\n2. Tap Login.", "\n3. Enter your code."]),
    C("list_bare", "Options:\n1. Red\n2. Green\n3. Blue", ["1.", "2.", "3."],
      sentence=["Options:", "\n1. Red", "\n2. Green", "\n3. Blue"]),
    C("list_at_start", "1. Preheat the oven.\n2. Mix the flour and eggs.", ["1.", "2."],
      sentence=["1. Preheat the oven.", "\n2. Mix the flour and eggs."]),
    C("list_two_digits", "Rules:\n10. Be kind.\n11. Be brief.", ["10.", "11."],
      sentence=["Rules:", "\n10. Be kind.", "\n11. Be brief."]),
    C("bullets_dash", "Shopping list:\n- milk\n- eggs\n- bread",
      sentence=["Shopping list:", "\n- milk", "\n- eggs", "\n- bread"],
      sentence_text=["Shopping list:", "milk", "eggs", "bread"]),
    C("bullets_star", "* first item\n* second item",
      sentence=["* first item", "\n* second item"], sentence_text=["first item", "second item"]),
    # ---------------------------------------------------------------- ellipses
    C("ellipsis_lower", "Well... maybe we can try again tomorrow.", ["Well... maybe"],
      sentence=["Well... maybe we can try again tomorrow."]),
    C("ellipsis_char_lower", "Well… maybe not today.", ["Well… maybe"],
      sentence=["Well… maybe not today."]),
    C("ellipsis_upper", "I waited... Nobody came.", sentence=["I waited...", " Nobody came."]),
    C("ellipsis_char_upper", "I called… No answer.", sentence=["I called…", " No answer."]),
    C("ellipsis_end", "And then...", sentence=["And then..."]),
    C("ellipsis_mixed", "Hmm... let me think about that, okay... Sure.", ["Hmm... let"],
      sentence=["Hmm... let me think about that, okay...", " Sure."]),
    # ---------------------------------------------------------------- quotes and brackets
    C("quote_straight", 'She said "Go home." Then she left.',
      sentence=['She said "Go home."', " Then she left."]),
    C("quote_curly", "“Stop right there!” The guard raised his hand.",
      sentence=["“Stop right there!”", " The guard raised his hand."]),
    C("quote_single_curly", "He told me ‘not yet.’ So I waited.",
      sentence=["He told me ‘not yet.’", " So I waited."]),
    C("quote_question", 'Did she say "yes?" Nobody knows.',
      sentence=['Did she say "yes?"', " Nobody knows."]),
    C("paren_inside", "(See the appendix for details.) The next part is short.",
      sentence=["(See the appendix for details.)", " The next part is short."]),
    C("paren_outside", "It works (mostly). Really, it does.",
      sentence=["It works (mostly).", " Really, it does."]),
    C("bracket_digit", "Read the note [page 4.] Then continue.",
      sentence=["Read the note [page 4.]", " Then continue."]),
    C("guillemets", "Il a dit «Bonjour.» Puis il est parti.",
      sentence=["Il a dit «Bonjour.»", " Puis il est parti."]),
    C("closers_stacked", 'He wrote (in red "Done.") Then nothing.',
      sentence=['He wrote (in red "Done.")', " Then nothing."]),
    # ---------------------------------------------------------------- newlines and whitespace
    C("newline_no_period", "First line without period\nSecond line here",
      sentence=["First line without period", "\nSecond line here"]),
    C("blank_line", "Para one.\n\nPara two.", sentence=["Para one.", "\n\nPara two."]),
    C("space_before_newline", "First line \nSecond line. Third \n\nFourth.",
      sentence=["First line", " \nSecond line.", " Third", " \n\nFourth."]),
    C("crlf", "Line one.\r\nLine two.", sentence=["Line one.", "\r\nLine two."]),
    C("tabs", "Tab\tseparated. Words\there.", sentence=["Tab\tseparated.", " Words\there."]),
    C("leading_trailing_space", "  Leading spaces. And trailing spaces.   ",
      sentence=["  Leading spaces.", " And trailing spaces."]),
    C("whitespace_only", "   \n  ", sentence=[], clause=[]),
    C("empty", "", sentence=[], clause=[]),
    C("single_word", "Okay", sentence=["Okay"], clause=["Okay"]),
    C("questions_exclaims", "Really? Yes! Great.", sentence=["Really?", " Yes!", " Great."]),
    C("exclaim_lowercase_after", "Wow! that is big.", sentence=["Wow!", " that is big."]),
    C("apostrophes", "It's Tom's car. Isn't it?", sentence=["It's Tom's car.", " Isn't it?"]),
    C("slash_words", "Use a pen and/or pencil. Thanks.", sentence=["Use a pen and/or pencil.", " Thanks."]),
    # ---------------------------------------------------------------- unicode
    C("emoji_mid", "Great news 🎉 your order shipped! It arrives soon 🚚.",
      sentence=["Great news 🎉 your order shipped!", " It arrives soon 🚚."]),
    C("emoji_zwj", "Family time 👨\u200d👩\u200d👧 is the best. Really!",
      sentence=["Family time 👨\u200d👩\u200d👧 is the best.", " Really!"]),
    C("emoji_only", "😀😀🎉", sentence=["😀😀🎉"], silent=True),
    C("emoji_only_spaced", "👍 🙂 ❤️", sentence=["👍 🙂 ❤️"], silent=True),
    C("arabic", "مرحبا بك. أنا بخير.", sentence=["مرحبا بك.", " أنا بخير."]),
    C("hebrew", "שלום עולם. מה שלומך?", sentence=["שלום עולם.", " מה שלומך?"]),
    C("mixed_rtl", "The word שלום means peace. Nice!", sentence=["The word שלום means peace.", " Nice!"]),
    C("cjk_not_required", "你好。我很好。谢谢!"),  # CJK full stops need not be boundaries: invariants only
    # ---------------------------------------------------------------- markdown
    C("markdown_only", "** ** `` ``", sentence=["** ** `` ``"], silent=True),
    C("markdown_mixed", "**Important:** call `555-0100` before *noon*. Thanks!",
      sentence=["**Important:** call `555-0100` before *noon*.", " Thanks!"],
      sentence_text=["Important: call 555-0100 before noon.", "Thanks!"]),
    C("markdown_heading_link", "# Summary\nSee [the docs](https://example.com/docs) for more. Done.",
      ["https://example.com/docs"],
      sentence=["# Summary", "\nSee [the docs](https://example.com/docs) for more.", " Done."],
      sentence_text=["Summary", "See the docs for more.", "Done."]),
    C("markdown_underscore", "This is _really_ important. Listen.",
      sentence=["This is _really_ important.", " Listen."],
      sentence_text=["This is really important.", "Listen."]),
    C("markdown_code_dots", "Run `pip install foo.bar` first. Then restart.", ["foo.bar"],
      sentence=["Run `pip install foo.bar` first.", " Then restart."],
      sentence_text=["Run pip install foo.bar first.", "Then restart."]),
    # ---------------------------------------------------------------- no punctuation, long
    C("no_punctuation", "this reply has no punctuation at all and just keeps going on and on",
      sentence=["this reply has no punctuation at all and just keeps going on and on"]),
    C("seed_turn4", SEED_TURN4,
      sentence=[SEED_TURN4],
      clause=["You filled out a Facebook ad about creating passive income without adding more hours to your day—",
              "that's how we got your info."]),
    C("long_priced_list", _LONG_TEXT, ["$7.99", "$42.99", "$119.99"], sentence=_LONG_PARTS),
    C("long_unpunctuated", LONG_UNPUNCTUATED, sentence=[LONG_UNPUNCTUATED]),
    # ---------------------------------------------------------------- weak boundaries (clause)
    C("clause_semicolon", "I checked the calendar twice; there is no free slot on Monday.",
      clause=["I checked the calendar twice;", " there is no free slot on Monday."]),
    C("clause_short_commas", "Yes, sure, okay, fine.", clause=["Yes, sure, okay, fine."]),
    C("clause_colon", "Here is what you need to know: the office closes early today.",
      clause=["Here is what you need to know:", " the office closes early today."]),
    C("clause_endash_spaced", "We can meet on Tuesday afternoon – or on Wednesday if you prefer.",
      clause=["We can meet on Tuesday afternoon –", " or on Wednesday if you prefer."]),
    C("clause_comma_accumulates", "Well, as I said before, we can ship it tomorrow, or on Friday.",
      clause=["Well, as I said before, we can ship it tomorrow,", " or on Friday."]),
]

# Sanity of the data itself (checked again in the tests, with messages).
assert len({c.id for c in CASES}) == len(CASES), "duplicate case ids"

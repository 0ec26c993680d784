"""Print the corpus table (docs/data.md#redaction) and what was missed or wrongly found."""

from tests.model.redaction_corpus import lines, score

measured = score(lines())
print(measured.table())
for entry in measured.misses:
    print("missed:", entry)
for entry in measured.wrong:
    print("false:", entry)

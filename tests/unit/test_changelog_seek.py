"""Which changelog offsets table recovery could not seek to."""

from collections import Counter

from aiokafka import TopicPartition

from streams.runtime.faust_fixes import unseekable_changelog_partitions

READ, NONE_YET, UNRECORDED, BROKEN, MISSING = (TopicPartition("sku-changelog", n) for n in range(5))


def test_a_partition_without_an_integer_offset_of_at_least_minus_one_cannot_be_sought():
    offsets = Counter({READ: 41, NONE_YET: -1, UNRECORDED: None, BROKEN: -2})
    tps = {READ, NONE_YET, UNRECORDED, BROKEN, MISSING}
    assert set(unseekable_changelog_partitions(tps, offsets)) == {UNRECORDED, BROKEN, MISSING}


def test_partitions_outside_the_ones_being_sought_are_not_looked_at():
    offsets = Counter({READ: 41, UNRECORDED: None})
    assert unseekable_changelog_partitions({READ}, offsets) == []

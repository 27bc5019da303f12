package main

import (
	"slices"
	"testing"
	"time"
)

// zone loads an IANA zone for a test, from the embedded zone database if need be.
func zone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// at parses an RFC 3339 time for a test.
func at(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestCalendarStarts checks where hours, days, weeks and months start at zones with and
// without changes of the clocks, and at a fixed offset.
func TestCalendarStarts(t *testing.T) {
	for _, c := range []struct {
		zone, unit, t, want string
	}{
		// Europe/Berlin, spring: 02:00 does not exist; autumn: 02:00 to 03:00 twice.
		{"Europe/Berlin", "hour", "2026-03-29T01:30:00Z", "2026-03-29T03:00:00+02:00"},
		{"Europe/Berlin", "hour", "2026-03-29T00:59:59Z", "2026-03-29T01:00:00+01:00"},
		{"Europe/Berlin", "hour", "2026-10-25T00:30:00Z", "2026-10-25T02:00:00+02:00"},
		{"Europe/Berlin", "hour", "2026-10-25T01:30:00Z", "2026-10-25T02:00:00+01:00"},
		{"Europe/Berlin", "day", "2026-03-29T22:30:00Z", "2026-03-30T00:00:00+02:00"},
		{"Europe/Berlin", "day", "2026-03-28T23:30:00Z", "2026-03-29T00:00:00+01:00"},
		{"Europe/Berlin", "day", "2026-10-25T22:59:59Z", "2026-10-25T00:00:00+02:00"},
		{"Europe/Berlin", "week", "2026-03-29T12:00:00Z", "2026-03-23T00:00:00+01:00"},
		{"Europe/Berlin", "month", "2026-04-01T00:30:00+02:00", "2026-04-01T00:00:00+02:00"},
		{"Europe/Berlin", "month", "2026-03-31T22:30:00Z", "2026-04-01T00:00:00+02:00"},
		// America/New_York: 02:00 to 03:00 in spring, 01:00 twice in autumn.
		{"America/New_York", "hour", "2026-03-08T07:30:00Z", "2026-03-08T03:00:00-04:00"},
		{"America/New_York", "hour", "2026-11-01T05:30:00Z", "2026-11-01T01:00:00-04:00"},
		{"America/New_York", "hour", "2026-11-01T06:30:00Z", "2026-11-01T01:00:00-05:00"},
		{"America/New_York", "day", "2026-11-01T23:00:00-05:00", "2026-11-01T00:00:00-04:00"},
		{"America/New_York", "month", "2026-11-15T12:00:00Z", "2026-11-01T00:00:00-04:00"},
		// Hours that start at :30 and :45 past a UTC hour.
		{"Asia/Kolkata", "hour", "2026-05-02T05:10:00Z", "2026-05-02T10:00:00+05:30"},
		{"Asia/Kolkata", "day", "2026-05-01T18:29:59Z", "2026-05-01T00:00:00+05:30"},
		{"Asia/Kolkata", "day", "2026-05-01T18:30:00Z", "2026-05-02T00:00:00+05:30"},
		{"Asia/Kathmandu", "hour", "2026-05-02T05:10:00Z", "2026-05-02T10:00:00+05:45"},
		{"Asia/Kathmandu", "hour", "2026-05-02T04:14:59Z", "2026-05-02T09:00:00+05:45"},
		{"Asia/Kathmandu", "day", "2026-05-01T18:15:00Z", "2026-05-02T00:00:00+05:45"},
		// Where the clocks change at midnight, a day starts at the change or the first midnight.
		{"America/Santiago", "day", "2026-09-06T12:00:00Z", "2026-09-06T01:00:00-03:00"},
		{"America/Havana", "day", "2026-11-01T12:00:00Z", "2026-11-01T00:00:00-04:00"},
		// Lord Howe Island puts its clocks back by half an hour: its 01:00 hour is 90 minutes.
		{"Australia/Lord_Howe", "hour", "2026-04-04T15:10:00Z", "2026-04-05T01:00:00+11:00"},
		// A fixed offset.
		{"+05:30", "hour", "2026-05-02T05:10:00Z", "2026-05-02T10:00:00+05:30"},
		{"+05:30", "week", "2026-05-03T12:00:00Z", "2026-04-27T00:00:00+05:30"},
		{"-10:00", "day", "2026-05-02T09:59:59Z", "2026-05-01T00:00:00-10:00"},
	} {
		loc := testZone(t, c.zone)
		got := bucketUnit{c.unit}.trunc(at(t, c.t), loc).Format(time.RFC3339)
		if got != c.want {
			t.Errorf("%s trunc(%s) at %s = %s; want %s", c.unit, c.t, c.zone, got, c.want)
		}
	}
}

// testZone is an IANA zone, or a fixed offset written as +05:30 as utc_offset makes it.
func testZone(t *testing.T, name string) *time.Location {
	t.Helper()
	if name[0] == '+' || name[0] == '-' {
		v := at(t, "2000-01-01T00:00:00"+name)
		_, off := v.Zone()
		return time.FixedZone(name, off)
	}
	return zone(t, name)
}

// TestCalendarDays checks the buckets of whole local days through the changes of the
// clocks: how many hours a day has, and the first and last of them.
func TestCalendarDays(t *testing.T) {
	for _, c := range []struct {
		zone, day   string
		hours       int
		first, last string
	}{
		{"Europe/Berlin", "2026-03-29", 23, "2026-03-29T00:00:00+01:00", "2026-03-29T23:00:00+02:00"},
		{"Europe/Berlin", "2026-10-25", 25, "2026-10-25T00:00:00+02:00", "2026-10-25T23:00:00+01:00"},
		{"Europe/Berlin", "2026-07-01", 24, "2026-07-01T00:00:00+02:00", "2026-07-01T23:00:00+02:00"},
		{"America/New_York", "2026-03-08", 23, "2026-03-08T00:00:00-05:00", "2026-03-08T23:00:00-04:00"},
		{"America/New_York", "2026-11-01", 25, "2026-11-01T00:00:00-04:00", "2026-11-01T23:00:00-05:00"},
		{"Asia/Kolkata", "2026-05-02", 24, "2026-05-02T00:00:00+05:30", "2026-05-02T23:00:00+05:30"},
		{"Asia/Kathmandu", "2026-05-02", 24, "2026-05-02T00:00:00+05:45", "2026-05-02T23:00:00+05:45"},
		{"+05:30", "2026-05-02", 24, "2026-05-02T00:00:00+05:30", "2026-05-02T23:00:00+05:30"},
	} {
		loc := testZone(t, c.zone)
		d, _ := time.Parse(time.DateOnly, c.day)
		from := dateStart(d.Year(), d.Month(), d.Day(), loc)
		to := addDays(from, 1, loc)
		hour := bucketUnit{"hour"}
		starts := hour.starts(from, to, loc)
		if len(starts) != c.hours || starts[0].Format(time.RFC3339) != c.first || starts[len(starts)-1].Format(time.RFC3339) != c.last {
			t.Errorf("hours of %s at %s = %d from %s to %s; want %d from %s to %s", c.day, c.zone,
				len(starts), starts[0].Format(time.RFC3339), starts[len(starts)-1].Format(time.RFC3339), c.hours, c.first, c.last)
		}
		if n := hour.count(from, to, loc); n != int64(c.hours) {
			t.Errorf("hour.count(%s) at %s = %d; want %d", c.day, c.zone, n, c.hours)
		}
		if got := to.Sub(from); got != time.Duration(c.hours)*time.Hour {
			t.Errorf("length of %s at %s = %s; want %d hours", c.day, c.zone, got, c.hours)
		}
		if n := (bucketUnit{"day"}).count(from, to, loc); n != 1 {
			t.Errorf("day.count(%s) at %s = %d; want 1", c.day, c.zone, n)
		}
		for i, s := range starts {
			if !hourStart(s, loc).Equal(s) || !hourStart(s.Add(59*time.Minute), loc).Equal(s) {
				t.Errorf("hourStart of hour %d (%s) at %s is not that hour", i, s.Format(time.RFC3339), c.zone)
			}
		}
	}
}

// TestCalendarRanges checks the splitting of ranges into whole units and ends, the period
// before a range, and the counts of buckets.
func TestCalendarRanges(t *testing.T) {
	berlin := zone(t, "Europe/Berlin")
	day := func(s string) time.Time {
		v, _ := time.Parse(time.DateOnly, s)
		return dateStart(v.Year(), v.Month(), v.Day(), berlin)
	}
	str := func(tr timeRange) string {
		return tr.from.In(berlin).Format(time.RFC3339) + "/" + tr.to.In(berlin).Format(time.RFC3339)
	}
	for _, c := range []struct {
		tr          timeRange
		perDay      bool
		whole       string
		parts       []string
		wantNoWhole bool
	}{
		{tr: timeRange{at(t, "2026-10-25T01:30:00+02:00"), at(t, "2026-10-25T02:15:00+01:00")}, whole: "2026-10-25T02:00:00+02:00/2026-10-25T02:00:00+01:00",
			parts: []string{"2026-10-25T01:30:00+02:00/2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00/2026-10-25T02:15:00+01:00"}},
		{tr: timeRange{at(t, "2026-03-28T12:00:00+01:00"), day("2026-03-31")}, perDay: true, whole: "2026-03-29T00:00:00+01:00/2026-03-31T00:00:00+02:00",
			parts: []string{"2026-03-28T12:00:00+01:00/2026-03-29T00:00:00+01:00"}},
		{tr: timeRange{at(t, "2026-03-29T01:00:00+01:00"), at(t, "2026-03-29T04:00:00+02:00")}, perDay: true, wantNoWhole: true,
			parts: []string{"2026-03-29T01:00:00+01:00/2026-03-29T04:00:00+02:00"}},
	} {
		whole, has, parts := splitRange(c.tr, berlin, c.perDay)
		var got []string
		for _, p := range parts {
			got = append(got, str(p))
		}
		if has == c.wantNoWhole || (has && str(whole) != c.whole) || !slices.Equal(got, c.parts) {
			t.Errorf("splitRange(%s, perDay %v) = %s %v %v; want %s %v", str(c.tr), c.perDay, str(whole), has, got, c.whole, c.parts)
		}
	}
	for _, c := range []struct{ tr, want string }{
		// A week across the change of the clocks: seven days, one of 23 hours.
		{"2026-03-30T00:00:00+02:00/2026-04-06T00:00:00+02:00", "2026-03-23T00:00:00+01:00/2026-03-30T00:00:00+02:00"},
		{"2026-10-26T00:00:00+01:00/2026-10-27T00:00:00+01:00", "2026-10-25T00:00:00+02:00/2026-10-26T00:00:00+01:00"},
		// Not whole days: the same duration.
		{"2026-03-29T12:00:00+02:00/2026-03-29T14:00:00+02:00", "2026-03-29T10:00:00+02:00/2026-03-29T12:00:00+02:00"},
	} {
		var tr timeRange
		tr.from, tr.to = at(t, c.tr[:25]), at(t, c.tr[26:])
		if got := str(previousRange(tr, berlin)); got != c.want {
			t.Errorf("previousRange(%s) = %s; want %s", c.tr, got, c.want)
		}
	}
	for _, c := range []struct {
		unit     string
		from, to string
		want     int64
	}{
		{"hour", "2026-10-25", "2026-10-26", 25},
		{"day", "2026-03-01", "2026-04-01", 31},
		{"week", "2026-03-23", "2026-04-06", 2},
		{"month", "2026-01-01", "2027-01-01", 12},
	} {
		if got := (bucketUnit{c.unit}).count(day(c.from), day(c.to), berlin); got != c.want {
			t.Errorf("%s.count(%s, %s) = %d; want %d", c.unit, c.from, c.to, got, c.want)
		}
		if got := len((bucketUnit{c.unit}).starts(day(c.from), day(c.to), berlin)); int64(got) != c.want {
			t.Errorf("len(%s.starts(%s, %s)) = %d; want %d", c.unit, c.from, c.to, got, c.want)
		}
	}
}

// TestCalendarZoneNames checks the names of zones and the offsets that a rebuild of the
// rollups gives PostgreSQL.
func TestCalendarZoneNames(t *testing.T) {
	for _, c := range []struct {
		loc  *time.Location
		want string
	}{
		{zone(t, "Europe/Berlin"), "Europe/Berlin"}, {zone(t, "Asia/Kolkata"), "Asia/Kolkata"},
		{time.FixedZone("+05:30", 19800), "UTC+05:30"}, {time.FixedZone("", -3600), "UTC-01:00"}, {time.UTC, "UTC+00:00"},
	} {
		if got := zoneName(c.loc); got != c.want {
			t.Errorf("zoneName(%s) = %q; want %q", c.loc, got, c.want)
		}
	}
	changes, offsets := zonePeriods(zone(t, "Europe/Berlin"))
	i := slices.IndexFunc(changes, func(c time.Time) bool { return c.Equal(at(t, "2026-03-29T01:00:00Z")) })
	if i < 0 || offsets[i] != 3600 || offsets[i+1] != 7200 || len(offsets) != len(changes)+1 {
		t.Errorf("zonePeriods(Europe/Berlin): change at 2026-03-29T01:00Z is %d, offsets around it %v; want +1h then +2h", i, offsets[max(0, i):min(len(offsets), i+2)])
	}
	if changes, offsets := zonePeriods(time.FixedZone("", 19800)); len(changes) != 0 || !slices.Equal(offsets, []int64{19800}) {
		t.Errorf("zonePeriods(+05:30) = %v, %v; want no change and 19800", changes, offsets)
	}
}

// TestCalendarLabels checks that the plots' labels of the hour shown twice on an autumn
// night tell the two apart.
func TestCalendarLabels(t *testing.T) {
	berlin := zone(t, "Europe/Berlin")
	hour := bucketUnit{"hour"}
	for _, c := range []struct{ t, label, tick string }{
		{"2026-10-25T00:00:00Z", "Oct 25 02:00 CEST", "02:00 CEST"},
		{"2026-10-25T01:00:00Z", "Oct 25 02:00 CET", "02:00 CET"},
		{"2026-10-25T02:00:00Z", "Oct 25 03:00", "03:00"},
		{"2026-10-24T22:00:00Z", "Oct 25 00:00", "Oct 25"},
	} {
		v := at(t, c.t).In(berlin)
		if got := hour.label(v); got != c.label {
			t.Errorf("hour.label(%s) = %q; want %q", c.t, got, c.label)
		}
		if got := hour.tick(v); got != c.tick {
			t.Errorf("hour.tick(%s) = %q; want %q", c.t, got, c.tick)
		}
	}
}

// TestRangeDatesAreLocalDays checks that from= and to= dates bound whole local days, also
// where the clocks change at midnight and a day starts at 01:00.
func TestRangeDatesAreLocalDays(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		zone, from, to string
		wantFrom       string
		wantTo         string
	}{
		{"Europe/Berlin", "2026-03-29", "2026-03-29", "2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00"},
		{"Europe/Berlin", "2026-10-25", "2026-10-25", "2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00"},
		{"America/Santiago", "2026-09-06", "2026-09-06", "2026-09-06T01:00:00-03:00", "2026-09-07T00:00:00-03:00"},
		{"Asia/Kolkata", "2026-05-01", "2026-05-02", "2026-05-01T00:00:00+05:30", "2026-05-03T00:00:00+05:30"},
	} {
		loc := zone(t, c.zone)
		tr, err := parseRange(map[string][]string{"from": {c.from}, "to": {c.to}}, loc)
		if err != nil {
			t.Fatalf("parseRange(from=%s, to=%s) at %s: %v", c.from, c.to, c.zone, err)
		}
		if got := [2]string{tr.from.In(loc).Format(time.RFC3339), tr.to.In(loc).Format(time.RFC3339)}; got != [2]string{c.wantFrom, c.wantTo} {
			t.Errorf("parseRange(from=%s, to=%s) at %s = %v; want [%s %s]", c.from, c.to, c.zone, got, c.wantFrom, c.wantTo)
		}
	}
}

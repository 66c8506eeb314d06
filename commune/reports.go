package commune

import (
	"encoding/csv"
	"fmt"
	"html"
	"net/http"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// MonthRow is one village's month in the report.
type MonthRow struct {
	Site string `json:"site"`
	Totals
	DeliveryRatio float64 `json:"delivery_ratio"`
}

// Month returns every village's air time and delivery in month
// (YYYY-MM, the commune's time zone), configured villages without any
// broadcast included with zeros.
func (s *Server) Month(month string) ([]MonthRow, error) {
	if _, err := time.Parse("2006-01", month); err != nil {
		return nil, fmt.Errorf("month %q is not YYYY-MM", month)
	}
	rows := map[string]*MonthRow{}
	var order []string
	add := func(site string) *MonthRow {
		if r, ok := rows[site]; ok {
			return r
		}
		r := &MonthRow{Site: site}
		rows[site] = r
		order = append(order, site)
		return r
	}
	for _, v := range s.cfg.Commune.Villages {
		add(v)
	}
	err := s.db.bolt.View(func(tx *bolt.Tx) error {
		vs, err := list[Village](tx, bVillages, "")
		if err != nil {
			return err
		}
		for _, v := range vs {
			r := add(v.Site)
			get(tx, bMonths, v.Site+"/"+month, &r.Totals)
		}
		return nil
	})
	out := make([]MonthRow, 0, len(order))
	for _, site := range order {
		r := rows[site]
		r.DeliveryRatio = r.Totals.Ratio()
		out = append(out, *r)
	}
	return out, err
}

func (s *Server) monthParam(r *http.Request) string {
	if m := r.URL.Query().Get("month"); m != "" {
		return m
	}
	return s.now().In(s.loc()).Format("2006-01")
}

func (s *Server) report(w http.ResponseWriter, r *http.Request) {
	m := s.monthParam(r)
	rows, err := s.Month(m)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"month": m, "villages": rows})
}

// reportCSV is the month as CSV (RFC 4180), one row per village.
func (s *Server) reportCSV(w http.ResponseWriter, r *http.Request) {
	m := s.monthParam(r)
	rows, err := s.Month(m)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="commune-%s-%s.csv"`, s.cfg.Commune.ID, m))
	cw := csv.NewWriter(w)
	cw.Write([]string{"month", "village", "broadcasts", "air_minutes", "speaker_deliveries", "frames_expected", "frames_played", "frames_late", "frames_lost", "delivery_percent"})
	for _, x := range rows {
		cw.Write([]string{m, x.Site, strconv.Itoa(x.Broadcasts), strconv.FormatFloat(x.AirSeconds/60, 'f', 2, 64),
			strconv.FormatUint(x.Speakers, 10), strconv.FormatUint(x.FramesExpected, 10), strconv.FormatUint(x.FramesPlayed, 10),
			strconv.FormatUint(x.FramesLate, 10), strconv.FormatUint(x.FramesLost, 10), strconv.FormatFloat(100*x.DeliveryRatio, 'f', 1, 64)})
	}
	cw.Flush()
}

// reportSVG is a bar chart of the month: air minutes per village, with
// the delivery percentage written on each bar.
func (s *Server) reportSVG(w http.ResponseWriter, r *http.Request) {
	m := s.monthParam(r)
	rows, err := s.Month(m)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	const width, rowH, left = 360, 28, 90
	maxMin := 0.0 // the longest bar spans the chart
	for _, x := range rows {
		maxMin = max(maxMin, x.AirSeconds/60)
	}
	if maxMin == 0 {
		maxMin = 1
	}
	var b strings.Builder
	h := 40 + rowH*len(rows)
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12" role="img" aria-label="Thời lượng phát %s">`, width, h, width, h, html.EscapeString(m))
	fmt.Fprintf(&b, `<text x="0" y="16" font-weight="bold">Thời lượng phát (phút) · tỉ lệ nhận %s</text>`, html.EscapeString(m))
	for i, x := range rows {
		y := 30 + i*rowH
		bw := int(float64(width-left-60) * (x.AirSeconds / 60) / maxMin)
		fmt.Fprintf(&b, `<text x="0" y="%d">%s</text>`, y+15, html.EscapeString(x.Site))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="18" fill="#1f6f43"/>`, left, y+2, max(bw, 1))
		fmt.Fprintf(&b, `<text x="%d" y="%d">%.2f′ · %.0f%%</text>`, left+max(bw, 1)+4, y+15, x.AirSeconds/60, 100*x.DeliveryRatio)
	}
	b.WriteString(`</svg>`)
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Cache-Control", "no-store")
	w.Write([]byte(b.String()))
}

package camera

import (
	"strings"
	"testing"
)

// TestSplitURL is issue 6 at its root: credentials in the user information,
// in the query under any of the keys cheap cameras use, or in the path
// (Xiongmai firmware), are cut out of the URL as stored and shown, and put
// back exactly for dialling.
func TestSplitURL(t *testing.T) {
	for _, tc := range []struct{ raw, clean string }{
		{"rtsp://h/x?user=admin&pw=S3cr3t", "rtsp://h/x?user=***&pw=***"},
		{"rtsp://admin:S3cr3t@10.0.0.5:554/Streaming/Channels/101", "rtsp://10.0.0.5:554/Streaming/Channels/101"},
		{"rtsp://h:554/user=admin_password=S3cr3t_channel=1_stream=0.sdp?real_stream", "rtsp://h:554/user=***_password=***_channel=1_stream=0.sdp?real_stream"},
		{"rtsp://h/user=admin&password=S3cr3t&channel=1&stream=0.sdp", "rtsp://h/user=***&password=***&channel=1&stream=0.sdp"},
		{"rtsp://h/live?channel=1&cred=S3cr3t&subtype=0", "rtsp://h/live?channel=1&cred=***&subtype=0"},
		{"rtsp://h/live?usr=admin&pwd=S3cr3t", "rtsp://h/live?usr=***&pwd=***"},
		{"rtsp://h/live?loginuse=admin&loginpas=S3cr3t", "rtsp://h/live?loginuse=***&loginpas=***"},
		{"rtsp://h/live?Token=S3cr3t&PassWord=S3cr3t", "rtsp://h/live?Token=***&PassWord=***"},
		{"rtsp://u:p%40ss@h/x?key=S3%26cr3t", "rtsp://h/x?key=***"},
		{"rtsp://h/cam/realmonitor?channel=1&subtype=0", "rtsp://h/cam/realmonitor?channel=1&subtype=0"},
	} {
		clean, c, err := SplitURL(tc.raw)
		if err != nil {
			t.Fatalf("%s: %v", tc.raw, err)
		}
		if clean != tc.clean {
			t.Errorf("%s: clean %s, want %s", tc.raw, clean, tc.clean)
		}
		if strings.Contains(clean, "S3cr3t") || strings.Contains(c.Redacted(clean), "S3cr3t") || strings.Contains(RedactURL(tc.raw), "S3cr3t") {
			t.Errorf("%s: secret left in %s", tc.raw, clean)
		}
		back, err := c.Join(clean)
		if err != nil {
			t.Fatalf("%s: join: %v", tc.raw, err)
		}
		if back != tc.raw {
			t.Errorf("join %s = %s", tc.raw, back)
		}
	}
	// The shown URL sent back keeps the stored values.
	_, stored, _ := SplitURL("rtsp://admin:S3cr3t@h/x?user=admin&pw=S3cr3t")
	_, sent, _ := SplitURL("rtsp://***@h/y?user=***&pw=***")
	if sent.Username != "" || len(sent.Params) != 2 || sent.Params[1].Value != "" {
		t.Fatalf("placeholders: %+v", sent)
	}
	filled, err := sent.Fill(stored)
	if err != nil || filled.Params[1].Value != "S3cr3t" {
		t.Fatalf("fill: %+v %v", filled, err)
	}
	if _, err := sent.Fill(Credentials{}); err == nil || strings.Contains(err.Error(), "S3cr3t") {
		t.Fatalf("fill with nothing stored: %v", err)
	}
	if got := scrub("dial rtsp://admin:S3cr3t@h/x?pw=S3cr3t: 401", "rtsp://admin:S3cr3t@h/x?pw=S3cr3t"); strings.Contains(got, "S3cr3t") {
		t.Fatalf("scrub: %s", got)
	}
}

package main

// Chromium mode (-browser chromium): the sender is headless Chromium with a
// fake microphone playing a WAV tone (DESIGN.md, "WebRTC on loopback with
// headless Chromium"), which signs in through the same API, captures with
// getUserMedia (echo cancellation, noise suppression and auto gain off)
// and publishes over WHIP. Chromium's send time of each RTP packet is taken
// where it leaves on lo: an AF_PACKET socket sees every outgoing packet,
// and SRTP leaves the RTP header, with its sequence number, in clear (RFC
// 3711 §3.1). The benchmark and Chromium run in a network namespace with
// only lo up, so nothing else sends RTP there and Chromium cannot reach the
// internet.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/loalang/loalang/bench/fanout/harness"
	"github.com/loalang/loalang/internal/audiotest"
)

const netnsEnv = "LOALANG_BENCH_LIVE_NETNS"

// reexecInNetns runs this program again inside `unshare -n` with lo up and
// exits with its status. Inside the namespace, or where namespaces are not
// allowed, it returns.
func reexecInNetns() {
	if os.Getenv(netnsEnv) != "" || exec.Command("unshare", "-n", "true").Run() != nil {
		return
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/live:", err)
		os.Exit(1)
	}
	cmd := exec.Command("unshare", append([]string{"-n", "sh", "-c", `ip link set lo up && exec "$@"`, "sh", self}, os.Args[1:]...)...)
	cmd.Env = append(os.Environ(), netnsEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			os.Exit(ee.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "bench/live:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// rtpSniffer records when each outgoing RTP packet (RFC 7983's 128–191
// first byte, not an RTCP type) leaves on lo, by sequence number.
type rtpSniffer struct {
	fd   int
	mu   sync.Mutex
	seen map[uint16]time.Time
	done chan struct{}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func startSniffer() (*rtpSniffer, error) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		return nil, err
	}
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_DGRAM, int(htons(syscall.ETH_P_ALL)))
	if err != nil {
		return nil, fmt.Errorf("packet socket (needs CAP_NET_RAW): %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: htons(syscall.ETH_P_ALL), Ifindex: lo.Index}); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	// A read timeout lets the loop notice Close.
	tv := syscall.Timeval{Usec: 200_000}
	_ = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	s := &rtpSniffer{fd: fd, seen: map[uint16]time.Time{}, done: make(chan struct{})}
	go s.loop()
	return s, nil
}

func (s *rtpSniffer) loop() {
	buf := make([]byte, 2048)
	for {
		select {
		case <-s.done:
			return
		default:
		}
		n, from, err := syscall.Recvfrom(s.fd, buf, 0)
		now := time.Now()
		if err != nil || n < 28 {
			continue
		}
		// On lo every packet is seen twice; the outgoing copy is the send.
		if ll, ok := from.(*syscall.SockaddrLinklayer); !ok || ll.Pkttype != syscall.PACKET_OUTGOING {
			continue
		}
		b := buf[:n]
		if b[0]>>4 != 4 || b[9] != syscall.IPPROTO_UDP {
			continue
		}
		ihl := int(b[0]&0x0f) * 4
		if len(b) < ihl+8+12 {
			continue
		}
		p := b[ihl+8:]
		pt := p[1] & 0x7f
		if p[0] < 128 || p[0] > 191 || (pt >= 64 && pt <= 95) || p[0]&0x20 != 0 {
			continue // not RTP (STUN, DTLS, RTCP), or padded (bandwidth probes)
		}
		seq := binary.BigEndian.Uint16(p[2:])
		s.mu.Lock()
		if _, dup := s.seen[seq]; !dup {
			s.seen[seq] = now
		}
		s.mu.Unlock()
	}
}

// sendTimes returns the send times in sequence order (unwrapping from the
// first sequence number seen).
func (s *rtpSniffer) sendTimes() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	type pk struct {
		seq uint16
		at  time.Time
	}
	var ps []pk
	for q, at := range s.seen {
		ps = append(ps, pk{q, at})
	}
	slices.SortFunc(ps, func(a, b pk) int { return a.at.Compare(b.at) })
	if len(ps) == 0 {
		return nil
	}
	first := ps[0].seq
	slices.SortFunc(ps, func(a, b pk) int { return int(a.seq-first) - int(b.seq-first) })
	out := make([]time.Time, len(ps))
	for i, p := range ps {
		out[i] = p.at
	}
	return out
}

func (s *rtpSniffer) Close() {
	close(s.done)
	syscall.Close(s.fd)
}

// whipJS publishes the fake microphone over WHIP and resolves to the
// resource URL. Chromium sends 20 ms Opus packets by default.
const whipJS = `(async () => {
  const stream = await navigator.mediaDevices.getUserMedia({audio: {echoCancellation: false, noiseSuppression: false, autoGainControl: false}});
  const pc = new RTCPeerConnection();
  pc.addTransceiver(stream.getAudioTracks()[0], {direction: 'sendonly'});
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise(r => {
    if (pc.iceGatheringState === 'complete') return r();
    pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r());
  });
  const resp = await fetch('/api/v1/live/whip?zones=a&priority=normal', {method: 'POST',
    headers: {'Content-Type': 'application/sdp', 'Authorization': 'Bearer ' + %q}, body: pc.localDescription.sdp});
  const answer = await resp.text();
  if (resp.status !== 201) throw new Error('WHIP ' + resp.status + ': ' + answer);
  await pc.setRemoteDescription({type: 'answer', sdp: answer});
  window.__pc = pc;
  return resp.headers.get('Location');
})()`

// chromiumSend runs headless Chromium publishing a 1 kHz tone for seconds,
// and returns the send time of every RTP packet it sent, in order.
func chromiumSend(ctx context.Context, base, token string, seconds int, dir string) ([]time.Time, error) {
	path, err := exec.LookPath("chromium")
	if err != nil {
		return nil, fmt.Errorf("chromium is not installed (make deps installs it): %w", err)
	}
	wav := dir + "/mic.wav"
	if err := os.WriteFile(wav, harness.EncodeWAV(audiotest.Tone(1000, 0.5, 48000, (seconds+5)*1000), 48000), 0o644); err != nil {
		return nil, err
	}
	sn, err := startSniffer()
	if err != nil {
		return nil, err
	}
	defer sn.Close()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(dir + "/chromium"),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-file-for-fake-audio-capture", wav),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-features", "Translate,MediaRouter,OptimizationHints,WebRtcHideLocalIpsWithMdns"),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelTab := chromedp.NewContext(actx)
	defer cancelTab()
	bctx, cancel := context.WithTimeout(bctx, time.Duration(seconds)*time.Second+90*time.Second)
	defer cancel()
	if err := chromedp.Do(bctx, chromedp.Navigate(base+"/healthz")); err != nil {
		return nil, fmt.Errorf("chromium: open %s: %w", base, err)
	}
	location, err := chromedp.Run(bctx, chromedp.Evaluate[string](fmt.Sprintf(whipJS, token), chromedp.EvalAwaitPromise))
	if err != nil {
		return nil, fmt.Errorf("chromium: WHIP publish: %w", err)
	}
	select {
	case <-time.After(time.Duration(seconds) * time.Second):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	time.Sleep(500 * time.Millisecond) // the last frames drain
	if _, err := apiDo(base, token, "DELETE", location, "", nil); err != nil {
		return nil, err
	}
	_, _ = chromedp.Run(bctx, chromedp.Evaluate[bool](`window.__pc.close(), true`))
	sent := sn.sendTimes()
	if len(sent) == 0 {
		return nil, errors.New("chromium: no RTP packet seen on lo")
	}
	return sent, nil
}

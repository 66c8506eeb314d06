package uplink

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/loalang/loalang/device/wire"
)

// LiveChunk is a run of live speech from the commune: up to
// MaxChunkPackets Opus packets (RFC 6716) of 20 ms each, in order. It
// travels as JSON inside a ChunkEnvelope on Topics.Live(Session), at QoS 0:
// a lost chunk is a 80 ms gap, which is better than late audio.
type LiveChunk struct {
	// V is the chunk format version, 1.
	V int `json:"v"`
	// Session is the LiveRef.Session of the command that announced it.
	Session string `json:"session"`
	// Seq increases by one per chunk from 1; a village drops a chunk whose
	// Seq is not above the last one it played (duplicate or reordered).
	Seq uint64 `json:"seq"`
	// Captured is when the first packet's audio was captured at the
	// commune; packet i was captured at Captured + i×PacketDuration.
	Captured time.Time `json:"captured"`
	// Packets are the Opus packets (base64 in JSON).
	Packets [][]byte `json:"packets,omitempty"`
	// End marks the session's last chunk; it may carry no packets.
	End bool `json:"end,omitempty"`
}

// Limits on live chunks.
const (
	// PacketDuration is the duration of one Opus packet in a chunk.
	PacketDuration = 20 * time.Millisecond
	// MaxChunkPackets bounds the packets in one chunk (80 ms of audio).
	MaxChunkPackets = 4
	// MaxPacketBytes bounds one Opus packet, as the village's streams do
	// (wire.MaxOpusPacket, the frame limit of RFC 6716 §3.2.1).
	MaxPacketBytes = wire.MaxOpusPacket
	// MaxChunkEnvelope bounds a chunk envelope's bytes: 4 packets in
	// base64, twice, leaves room for the fields and the signature.
	MaxChunkEnvelope = 16 << 10
)

// ChunkEnvelope is what travels on a live topic: the chunk's JSON bytes
// and an Ed25519 signature over ChunkSigningInput of them.
type ChunkEnvelope struct {
	Chunk string `json:"chunk"`
	Sig   string `json:"sig"`
}

// liveContext separates chunk signatures from command signatures: a chunk
// never verifies as a command, nor a command as a chunk, even though the
// same commune key signs both.
const liveContext = "loalang-uplink-live-v1\n"

// ChunkSigningInput is what a chunk's signature covers: the context string
// followed by the chunk's bytes exactly as carried.
func ChunkSigningInput(chunk []byte) []byte { return append([]byte(liveContext), chunk...) }

// check validates a chunk's fields, not its signature.
func (c LiveChunk) check() error {
	switch {
	case c.V != 1:
		return fmt.Errorf("%w: chunk version %d", ErrMalformed, c.V)
	case c.Session == "" || len(c.Session) > maxSession:
		return fmt.Errorf("%w: chunk session", ErrMalformed)
	case c.Seq == 0:
		return fmt.Errorf("%w: chunk seq starts at 1", ErrMalformed)
	case c.Captured.IsZero():
		return fmt.Errorf("%w: chunk captured", ErrMalformed)
	case len(c.Packets) > MaxChunkPackets:
		return fmt.Errorf("%w: %d packets in a chunk, at most %d", ErrMalformed, len(c.Packets), MaxChunkPackets)
	case len(c.Packets) == 0 && !c.End:
		return fmt.Errorf("%w: empty chunk", ErrMalformed)
	}
	for i, p := range c.Packets {
		if len(p) == 0 || len(p) > MaxPacketBytes {
			return fmt.Errorf("%w: packet %d of %d bytes", ErrMalformed, i, len(p))
		}
	}
	return nil
}

// SignChunk encodes c and signs it with the commune's key.
func SignChunk(c LiveChunk, key ed25519.PrivateKey) ([]byte, error) {
	if c.V == 0 {
		c.V = 1
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("sign chunk: %w", err)
	}
	sig := ed25519.Sign(key, ChunkSigningInput(raw))
	out, err := json.Marshal(ChunkEnvelope{Chunk: base64.StdEncoding.EncodeToString(raw), Sig: base64.StdEncoding.EncodeToString(sig)})
	if err != nil {
		return nil, fmt.Errorf("sign chunk: %w", err)
	}
	if len(out) > MaxChunkEnvelope {
		return nil, fmt.Errorf("%w: chunk envelope of %d bytes exceeds %d", ErrMalformed, len(out), MaxChunkEnvelope)
	}
	return out, nil
}

// OpenChunk decodes a chunk envelope and returns the chunk only if one of
// the trusted commune keys signed it and its fields are valid. It does not
// check the session or the sequence (the receiver does).
func OpenChunk(raw []byte, trusted []ed25519.PublicKey) (LiveChunk, error) {
	if len(raw) > MaxChunkEnvelope {
		return LiveChunk{}, fmt.Errorf("%w: chunk envelope of %d bytes", ErrMalformed, len(raw))
	}
	var env ChunkEnvelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return LiveChunk{}, fmt.Errorf("%w: chunk envelope: %v", ErrMalformed, err)
	}
	chunkRaw, err := base64.StdEncoding.DecodeString(env.Chunk)
	if err != nil {
		return LiveChunk{}, fmt.Errorf("%w: chunk is not base64", ErrMalformed)
	}
	sig, err := base64.StdEncoding.DecodeString(env.Sig)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return LiveChunk{}, fmt.Errorf("%w: sig is not a base64 Ed25519 signature", ErrBadSignature)
	}
	input := ChunkSigningInput(chunkRaw)
	if !slices.ContainsFunc(trusted, func(k ed25519.PublicKey) bool { return ed25519.Verify(k, input, sig) }) {
		return LiveChunk{}, fmt.Errorf("%w: no trusted commune key signed the chunk", ErrBadSignature)
	}
	var c LiveChunk
	if err := json.Unmarshal(chunkRaw, &c); err != nil {
		return LiveChunk{}, fmt.Errorf("%w: chunk: %v", ErrMalformed, err)
	}
	if err := c.check(); err != nil {
		return LiveChunk{}, err
	}
	return c, nil
}

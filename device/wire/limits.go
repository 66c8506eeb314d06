package wire

// Direction says who publishes on a topic.
type Direction int

const (
	// FromDevice topics are published by the device that owns them.
	FromDevice Direction = iota + 1
	// ToDevice topics are published by the controller for the device or zone.
	ToDevice
)

// TopicRule is the contract of one device or zone topic: who publishes it,
// at which QoS, whether the message may be retained, and the largest
// payload a receiver accepts. Brokers enforce it on devices (package
// broker) so that a device cannot use its own topics as unbounded storage.
type TopicRule struct {
	// Suffix is the last topic level: dev/<id>/<Suffix> or zone/<zone>/<Suffix>.
	Suffix    string
	Direction Direction
	QoS       byte
	// Retained is true only where the protocol stores the latest message in
	// the broker (a device's status, also its last will).
	Retained bool
	// MaxPayload is the largest payload in bytes.
	MaxPayload int
}

// Payload ceilings per topic. A payload built by this package from valid
// values is far below its ceiling (a status is about 90 bytes, a clock
// request about 45); the ceilings leave room for longer firmware strings
// and error texts while keeping a device's footprint in the broker small.
const (
	// MaxStatusPayload bounds dev/<id>/status (and the will).
	MaxStatusPayload = 1 << 10
	// MaxHeartbeatPayload bounds dev/<id>/heartbeat.
	MaxHeartbeatPayload = 1 << 10
	// MaxReplyPayload bounds dev/<id>/reply, whose error text is free-form.
	MaxReplyPayload = MaxJSONPayload
	// MaxReportPayload bounds dev/<id>/report.
	MaxReportPayload = 1 << 10
	// MaxClockPayload bounds dev/<id>/clock and dev/<id>/time.
	MaxClockPayload = 256
	// MaxFramePayload is the largest audio frame: the header and
	// MaxPacketsPerFrame packets of MaxOpusPacket bytes with their lengths.
	MaxFramePayload = FrameHeaderLen + MaxPacketsPerFrame*(2+MaxOpusPacket)
	// MaxTopicLen is the longest topic of the protocol, 154 bytes:
	// "loalang/v1/" + site + "/dev/" + id + "/heartbeat", with 64-byte levels.
	MaxTopicLen = len("loalang/") + len(Version) + 1 + 64 + len("/dev/") + 64 + 1 + len(SufHeartbeat)
)

// Kinds of zone topic, the last level of zone/<zone>/<kind>.
const (
	ZoneKindStream = "stream"
	ZoneKindAudio  = "audio"
)

// DeviceTopicRules lists every topic under dev/<id>/ in protocol v1, in the
// order of docs/protocol.md. Nothing else under dev/<id>/ exists.
var DeviceTopicRules = []TopicRule{
	{Suffix: SufStatus, Direction: FromDevice, QoS: 1, Retained: true, MaxPayload: MaxStatusPayload},
	{Suffix: SufHeartbeat, Direction: FromDevice, QoS: 0, MaxPayload: MaxHeartbeatPayload},
	{Suffix: SufCmd, Direction: ToDevice, QoS: 1, MaxPayload: MaxJSONPayload},
	{Suffix: SufReply, Direction: FromDevice, QoS: 1, MaxPayload: MaxReplyPayload},
	{Suffix: SufReport, Direction: FromDevice, QoS: 1, MaxPayload: MaxReportPayload},
	{Suffix: SufClock, Direction: FromDevice, QoS: 0, MaxPayload: MaxClockPayload},
	{Suffix: SufTime, Direction: ToDevice, QoS: 0, MaxPayload: MaxClockPayload},
}

// ZoneTopicRules lists the topics under zone/<zone>/ in protocol v1.
var ZoneTopicRules = []TopicRule{
	{Suffix: ZoneKindStream, Direction: ToDevice, QoS: 1, MaxPayload: MaxJSONPayload},
	{Suffix: ZoneKindAudio, Direction: ToDevice, QoS: 0, MaxPayload: MaxFramePayload},
}

// ControllerProbe returns ctl/probe, a topic only the controller publishes
// and subscribes to: it sends itself a message there now and then to prove
// that its subscriptions still deliver. Devices may neither read nor write it.
func (t Topics) ControllerProbe() string { return t.prefix + "ctl/probe" }

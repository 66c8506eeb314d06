package wire

// Bundle is the provisioning bundle <data_dir>/provisioning.json (mode
// 0600): what a factory would flash into each device, and what
// firmware-sim reads to simulate a village. It is the only place device
// secrets exist in clear text.
type Bundle struct {
	Site string `json:"site"`
	// Broker is the MQTT broker URL devices connect to, e.g. tcp://10.0.0.2:1883.
	Broker  string         `json:"broker"`
	Devices []BundleDevice `json:"devices"`
	Cameras []BundleCamera `json:"cameras,omitempty"`
	Relays  []BundleRelay  `json:"relay_boards,omitempty"`
}

// BundleDevice is one speaker's flash image settings.
type BundleDevice struct {
	ID       string   `json:"id"`
	Kind     string   `json:"kind"`
	Name     string   `json:"name"`
	Zones    []string `json:"zones"`
	Username string   `json:"username"`
	Password string   `json:"password"`
}

// BundleCamera tells a simulated camera where to serve.
type BundleCamera struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	URL  string `json:"url"`
}

// BundleRelay tells a simulated relay board where its port is and which
// coils it has.
type BundleRelay struct {
	ID      string `json:"id"`
	Port    string `json:"port"`
	SlaveID int    `json:"slave_id"`
	Coils   int    `json:"coils"`
}

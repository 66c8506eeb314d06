package speaker

import (
	"log"
	"os"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// PAHO_DEBUG=1 turns on paho's internal logging, which is how to see why a
// connection did or did not end.
func init() {
	if os.Getenv("PAHO_DEBUG") != "" {
		mqtt.DEBUG = log.New(os.Stderr, "paho DEBUG ", log.Lmicroseconds)
		mqtt.WARN = log.New(os.Stderr, "paho WARN ", log.Lmicroseconds)
		mqtt.ERROR = log.New(os.Stderr, "paho ERROR ", log.Lmicroseconds)
	}
}

package speaker

import (
	"log"
	"os"
	"slices"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

func init() {
	if os.Getenv("PAHO_DEBUG") != "" {
		mqtt.DEBUG = log.New(os.Stderr, "DEBUG ", log.Lmicroseconds)
		mqtt.ERROR = log.New(os.Stderr, "ERROR ", log.Lmicroseconds)
		mqtt.WARN = log.New(os.Stderr, "WARN ", log.Lmicroseconds)
	}
}

func init() {
	if os.Getenv("MISS_DEBUG") != "" {
		dbgMissing = func(st *stream) {
			var m []int64
			for k := range st.missing {
				m = append(m, k)
			}
			slices.Sort(m)
			log.Printf("stream %d missing %v next %d last %d first %d maxSeen %d pending %d", st.id, m, st.nextSeq, st.lastSeq, st.firstSeq, st.maxSeen, len(st.pending))
		}
	}
}

func init() {
	if os.Getenv("MISS_DEBUG") != "" {
		dbgLate = func(st *stream, seq, lag int64) {
			log.Printf("stream %d seq %d late by %.1f ms", st.id, seq, float64(lag)/1e6)
		}
	}
}

package main

import "github.com/eclipse/paho.golang/paho"

func pahoPublish(topic, payload string) *paho.Publish {
	return &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)}
}

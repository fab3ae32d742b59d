"""mqttgate.codec"""

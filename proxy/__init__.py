"""mqttgate.proxy"""

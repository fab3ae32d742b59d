"""mqttgate.policy"""

"""The ``flowyard demo`` shop: an order-fulfillment blueprint, the workers that play its
payment, inventory and shipping services, and the server it runs against, as a child process.
"""

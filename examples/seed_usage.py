"""The usage example of the original EtherealFabric description, as written there.

Run it twice: the second run executes nothing, since both nodes are cached.
"""

from etherealfabric import Node, Workflow


class MyNode(Node):
    def __init__(self, input_data):
        super().__init__()
        self.input_data = input_data
        self.outputs = ["output_data"]

    def run(self):
        # Perform some computation
        result = self.input_data * 2
        return {"output_data": result}


# Create nodes
node1 = MyNode(input_data=10)
node2 = MyNode(input_data=node1.outputs["output_data"])

# Define dependencies
workflow = Workflow()
workflow.add_node(node1)
workflow.add_node(node2)
workflow.add_dependency(node1, node2)

# Execute the workflow
results = workflow.execute()

print(f"output_data = {results[node2]['output_data']}")
print(f"run {results.run_id}: executed {results.executed}, cached {results.cached}")

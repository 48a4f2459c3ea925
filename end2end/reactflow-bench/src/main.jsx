// The editor benchmark's yardstick: the same flow document the Waymark
// editor is measured on (../bench/graph-1000.json), drawn by React Flow the
// way a React Flow app would: controlled nodes and edges, a custom node
// shaped like Waymark's step card (168 x 56, icon, name, kind, an input on
// the left, outputs spread down the right, port names when there are
// several), bezier edges with an arrow and a label on every port but
// "next", snap to a 20 px grid, a minimap, zoom limits 0.25 to 2.5.
//
// The page's size and starting view come from the address
// (?w=&h=&x=&y=&zoom=), so the benchmark gives it the same canvas size and
// view as the Waymark editor it is compared with.
import { memo, useEffect } from "react";
import { createRoot } from "react-dom/client";
import {
  ReactFlow,
  ReactFlowProvider,
  MiniMap,
  Handle,
  Position,
  MarkerType,
  useNodesState,
  useEdgesState,
} from "@xyflow/react";
import "@xyflow/react/dist/style.css";
import graph from "../../bench/graph-1000.json";

const WIDTH = 168;
const HEIGHT = 56;
const GRID = 20;

// The kinds in the benchmark flow, as Waymark labels and groups them.
const KINDS = {
  start: { label: "Start", icon: "▶", group: "flowcontrol" },
  wait: { label: "Wait", icon: "◷", group: "flowcontrol" },
  condition: { label: "Condition", icon: "◇", group: "flowcontrol" },
  send_email: { label: "Send email", icon: "✉", group: "outreach" },
  update_contact: { label: "Update contact", icon: "✎", group: "recordupdates" },
};
const FILL = { flowcontrol: "#f3f6fc", outreach: "#f2fbf5", recordupdates: "#fbf7ef", integrations: "#f7f3fc" };

// Waymark's `kinds::ports` for these kinds.
function ports(step) {
  if (step.kind === "exit" || step.kind === "restart") return [];
  if (step.kind === "condition") return ["yes", "no"];
  return ["next"];
}

function truncate(text, max) {
  const chars = Array.from(text);
  return chars.length <= max ? text : chars.slice(0, max - 1).join("") + "…";
}

const StepCard = memo(function StepCard({ data, selected }) {
  const kind = KINDS[data.kind] ?? { label: data.kind, icon: "•", group: "flowcontrol" };
  const outputs = data.ports;
  return (
    <div
      className="card"
      title={`${data.name} — ${kind.label}`}
      style={{
        width: WIDTH,
        height: HEIGHT,
        boxSizing: "border-box",
        borderRadius: 10,
        border: selected ? "3px solid #1f4b99" : "1.2px solid #b8c1d1",
        background: FILL[kind.group],
        position: "relative",
        font: "13px system-ui, sans-serif",
      }}
    >
      <span style={{ position: "absolute", left: 12, top: 17, fontSize: 18 }}>{kind.icon}</span>
      <span style={{ position: "absolute", left: 42, top: 11, fontWeight: 600 }}>{truncate(data.name, 22)}</span>
      <span style={{ position: "absolute", left: 42, top: 30, fontSize: 11, color: "#5b6475" }}>{kind.label}</span>
      <Handle type="target" position={Position.Left} style={{ width: 8, height: 8 }} />
      {outputs.map((port, i) => {
        const top = (HEIGHT / (outputs.length + 1)) * (i + 1);
        return (
          <div key={port}>
            {outputs.length > 1 && (
              <span style={{ position: "absolute", right: 10, top: top - 8, fontSize: 10, color: "#5b6475" }}>{port}</span>
            )}
            <Handle id={port} type="source" position={Position.Right} style={{ top, width: 12, height: 12 }} title={`Drag to connect “${port}”`} />
          </div>
        );
      })}
    </div>
  );
});

const nodeTypes = { step: StepCard };

const initialNodes = graph.steps.map((step) => ({
  id: step.id,
  type: "step",
  position: { x: step.position.x, y: step.position.y },
  data: { kind: step.kind, name: step.name ?? step.kind, ports: ports(step) },
  width: WIDTH,
  height: HEIGHT,
}));

const initialEdges = graph.edges.map((edge) => ({
  id: `${edge.from}:${edge.port}->${edge.to}`,
  source: edge.from,
  sourceHandle: edge.port,
  target: edge.to,
  label: edge.port === "next" ? undefined : edge.port,
  markerEnd: { type: MarkerType.ArrowClosed },
}));

const params = new URLSearchParams(location.search);
const number = (name, fallback) => (params.has(name) ? Number(params.get(name)) : fallback);
const size = { width: number("w", 960), height: number("h", 600) };
const start = { x: number("x", 0), y: number("y", 0), zoom: number("zoom", 1) };

function Flow() {
  const [nodes, , onNodesChange] = useNodesState(initialNodes);
  const [edges, , onEdgesChange] = useEdgesState(initialEdges);
  useEffect(() => {
    // Ready once the first frame with every node is on screen.
    requestAnimationFrame(() => requestAnimationFrame(() => document.body.setAttribute("data-ready", "true")));
  }, []);
  return (
    <div
      className="bench-canvas"
      style={{
        ...size,
        border: "1px solid #dde2ea",
        background: "#fff radial-gradient(circle, #dde2ea 1px, transparent 1px) 0 0 / 20px 20px",
      }}
    >
      <ReactFlow
        nodes={nodes}
        edges={edges}
        onNodesChange={onNodesChange}
        onEdgesChange={onEdgesChange}
        nodeTypes={nodeTypes}
        defaultViewport={start}
        minZoom={0.25}
        maxZoom={2.5}
        snapToGrid
        snapGrid={[GRID, GRID]}
      >
        <MiniMap pannable={false} zoomable={false} />
      </ReactFlow>
    </div>
  );
}

createRoot(document.getElementById("root")).render(
  <ReactFlowProvider>
    <Flow />
  </ReactFlowProvider>,
);

/* pytest-aiperf report: draws each chart spec (aiperf/report/figures.py) with ECharts.
   Charts are drawn one per task, so the page is readable at once; each drawn chart's
   element gets data-rendered and data-thresholds (the threshold values it drew), and any
   script error is written into #report-errors, where a reader (and the browser test) sees
   it. */
(function () {
  'use strict';
  var VERDICT = { PASS: '#2e7d32', FAIL: '#c62828', INCONCLUSIVE: '#ef6c00' };
  var charts = [];

  function fail(message) {
    var box = document.getElementById('report-errors');
    if (!box) { return; }
    box.hidden = false;
    var line = document.createElement('div');
    line.textContent = String(message);
    box.appendChild(line);
  }
  window.addEventListener('error', function (event) { fail(event.message); });

  function esc(text) {
    return String(text).replace(/[&<>"]/g, function (c) {
      return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c];
    });
  }

  function num(value, digits) {
    return value === null || value === undefined ? '-' : Number(value).toFixed(digits);
  }

  // A timeline point is [start_s, value_ms, end_s, k, e]: k indexes the request's id and
  // e its error (-1: none) in the spec's "requests".
  function requestTip(requests) {
    return function (p) {
      var v = p.value;
      var failed = v[4] >= 0;
      var html = '<b>' + esc(p.seriesName) + '</b><br>request ' + esc(requests.ids[v[3]]) +
        '<br>start ' + num(v[0], 4) + ' s' + (v[2] === null ? '' : '<br>end ' + num(v[2], 4) + ' s') +
        '<br>' + (failed ? 'failed after ' : '') + num(v[1], 3) + ' ms';
      if (failed) {
        html += '<br><span style="color:#c62828">' + esc(requests.errors[v[4]]) + '</span>';
      }
      return html;
    };
  }

  function ladderTip(p) {
    var v = p.value;
    return '<b>' + esc(v[2]) + '</b><br>' + num(v[0], 2) + ' req/s<br>' + esc(p.seriesName) +
      ' ' + num(v[1], 2) + ' ms';
  }

  // A capacity point is [point, value, text]: the text says the probe's status and why.
  function capacityTip(p) {
    var v = p.value;
    return '<b>' + esc(p.seriesName) + '</b> ' + num(v[1], 2) + '<br>' + esc(v[2]);
  }

  function seriesOption(spec, s) {
    var o = { name: s.name, type: s.type === 'step' ? 'line' : s.type, data: s.data,
              yAxisIndex: s.y2 ? 1 : 0, animation: false };
    if (s.type === 'step') { o.step = 'end'; o.showSymbol = false; }
    if (s.type === 'line') {
      o.showSymbol = spec.kind === 'ladder' || spec.kind === 'capacity'; o.symbolSize = 7;
    }
    if (s.type === 'scatter') {
      o.symbolSize = 4;
      o.large = s.data.length > 4000;
      if (s.name.indexOf('failed') === 0) {
        o.symbol = 'triangle'; o.symbolSize = 7; o.itemStyle = { color: '#d62728' };
      }
    }
    if (s.verdict) {  // a capacity probe's status: its colour, drawn over the curves
      o.symbolSize = 11; o.z = 5; o.itemStyle = { color: VERDICT[s.verdict] || '#555' };
    }
    if (s.stack) { o.stack = s.stack; }
    if (s.dashed) { o.lineStyle = { type: 'dashed' }; }
    if (s.dotted) { o.lineStyle = { type: 'dotted', width: 2 }; }
    if (spec.kind === 'ladder') {
      o.label = { show: true, position: 'top', formatter: function (p) { return p.value[2]; } };
    }
    return o;
  }

  function option(spec) {
    var series = spec.series.map(function (s) { return seriesOption(spec, s); });
    if (!series.length) { series.push({ type: 'line', data: [], name: '' }); }
    var first = series[0];
    var marks = spec.vlines.map(function (v) {
      return { xAxis: v.x, name: v.label,
               lineStyle: { color: VERDICT[v.verdict] || '#555', type: 'solid', width: 2 },
               label: { formatter: v.label, position: 'insideEndTop', color: VERDICT[v.verdict] || '#555' } };
    }).concat(spec.hlines.map(function (h) {
      return { yAxis: h.y, name: h.label,
               lineStyle: h.threshold ? { color: '#c62828', type: 'dashed', width: 2 }
                                      : { color: '#999', type: 'dotted' },
               label: { formatter: h.label, position: 'insideStartTop' } };
    }));
    if (marks.length) { first.markLine = { symbol: 'none', animation: false, data: marks }; }
    if (spec.bands.length) {
      first.markArea = { silent: true, animation: false, itemStyle: { color: 'rgba(255,160,0,0.18)' },
        label: { show: false },
        data: spec.bands.map(function (b) { return [{ xAxis: b.x0, name: b.label }, { xAxis: b.x1 }]; }) };
    }
    var cdf = spec.kind === 'cdf' || spec.kind === 'baseline';
    var yAxis = [{ type: 'value', name: spec.y.name, min: cdf ? 0 : null, max: cdf ? 1 : null,
                   scale: spec.kind === 'latency' || spec.kind === 'ladder' || spec.kind === 'server' }];
    if (spec.y2) { yAxis.push({ type: 'value', name: spec.y2.name, splitLine: { show: false } }); }
    var tooltip = { trigger: 'axis', confine: true };
    if (spec.kind === 'latency') {
      tooltip = { trigger: 'item', confine: true, formatter: requestTip(spec.requests) };
    }
    if (spec.kind === 'ladder') { tooltip = { trigger: 'item', confine: true, formatter: ladderTip }; }
    if (spec.kind === 'capacity') {
      tooltip = { trigger: 'item', confine: true, formatter: capacityTip };
    }
    var result = {
      animation: false,
      title: { text: spec.title, left: 'center', textStyle: { fontSize: 13 } },
      grid: { left: 64, right: spec.y2 ? 64 : 28, top: spec.offscale ? 68 : 52, bottom: 72 },
      legend: { bottom: 0, type: 'scroll' },
      tooltip: tooltip,
      xAxis: { type: 'value', name: spec.x.name, nameLocation: 'middle', nameGap: 28, scale: true,
               min: spec.x.min === undefined ? null : spec.x.min,
               max: spec.x.max === undefined ? null : spec.x.max,
               axisLabel: { showMinLabel: spec.x.min === undefined, showMaxLabel: spec.x.max === undefined } },
      yAxis: yAxis,
      series: series,
      dataZoom: [{ type: 'inside', xAxisIndex: 0, filterMode: 'none' }]
    };
    if (spec.offscale) {
      result.title.subtext = spec.offscale.map(function (v) { return v.label; }).join('; ');
      result.title.subtextStyle = { color: '#c62828' };
    }
    if (spec.note) {
      result.graphic = [{ type: 'text', left: 'center', top: 'middle',
                          style: { text: spec.note, fill: '#777', fontSize: 13 } }];
    }
    return result;
  }

  function draw(spec) {
    var element = document.getElementById(spec.id);
    if (!element) { throw new Error('no element for chart ' + spec.id); }
    // Canvas for the many points of a timeline, SVG elsewhere (text stays in the DOM).
    var chart = echarts.init(element, null, { renderer: spec.kind === 'latency' ? 'canvas' : 'svg' });
    chart.setOption(option(spec));
    charts.push(chart);
    element.dataset.rendered = 'true';
    element.dataset.thresholds = spec.vlines.map(function (v) { return v.x; }).join(',');
    element.dataset.levels = spec.hlines.map(function (h) { return h.y; }).join(',');
  }

  // ?section=test-3 shows that test's section alone (a link to one test, a screenshot).
  function focusSection() {
    var wanted = new URLSearchParams(window.location.search).get('section');
    if (!wanted || !document.getElementById(wanted)) { return null; }
    Array.prototype.forEach.call(document.querySelectorAll('body > *'), function (node) {
      if (node.id !== wanted && node.id !== 'report-errors' && node.tagName !== 'SCRIPT') {
        node.hidden = true;
      }
    });
    return wanted;
  }

  function start() {
    var holder = document.getElementById('aiperf-charts');
    var specs = holder ? JSON.parse(holder.textContent) : [];
    var focus = focusSection();
    if (focus) {
      specs = specs.filter(function (spec) { return spec.id.indexOf(focus + '-') === 0; });
    }
    if (typeof echarts === 'undefined') { fail('the chart library did not load'); return; }
    var queue = specs.slice();
    function next() {
      var spec = queue.shift();
      if (!spec) {
        document.body.dataset.chartsDrawn = String(charts.length);
        return;
      }
      try { draw(spec); } catch (error) { fail(spec.id + ': ' + error); }
      setTimeout(next, 0);
    }
    next();
    window.addEventListener('resize', function () {
      charts.forEach(function (chart) { chart.resize(); });
    });
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
}());
